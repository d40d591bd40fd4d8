//! The layer list of dlib's face recognition network (`anet_type` of dlib's dnn_face_recognition_ex.cpp
//! and of the Python module's face_recognition_model_v1), read from dlib's serialisation of it.
//!
//! dlib writes a network from the loss layer down: each layer writes its version, then the whole network
//! below it, then its own parameters. So the file holds the versions of every layer top-down, then the
//! input layer, then the layers' parameters bottom-up, which is the order they run in. This reader
//! follows the same order with an explicit list of the layers anet_type has, so any other network (or a
//! damaged file) is refused at the first layer that differs, with its byte offset. Shapes are worked out
//! as the parameters are read, so each parameter tensor's size is known, and checked, before it is read.
//!
//! Never: accept a network that is not anet_type, keep training-only state, or panic on any input.

use super::serial::Reader;
use super::DlibError;

/// Side of the square chips anet_type takes (input_rgb_image_sized<150>).
pub(crate) const CHIP_SIDE: usize = 150;

/// Length of the embedding (fc_no_bias<128>).
pub(crate) const EMBEDDING_LEN: usize = 128;

/// A layer of the network, in the order they run. Tags, skips and additions refer to tags by number,
/// as dlib's tag1/skip1/add_prev1 do: `Skip(n)` and `AddPrev(n)` use the most recent `Tag(n)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Layer {
    Conv(Conv),
    /// Per-channel `x * gamma + beta` (dlib's affine_ in CONV_MODE, batch norm frozen).
    Affine(Affine),
    Relu,
    /// A relu or affine that dlib's file marks disabled: dlib passes its input through.
    Pass,
    MaxPool(Pool),
    AvgPool(Pool),
    /// avg_pool_everything: the mean of each channel.
    GlobalAvgPool,
    Tag(u8),
    /// The output of the most recent tag with this number replaces the current value.
    Skip(u8),
    /// The current value plus the most recent tag's output; where their shapes differ, dlib takes the
    /// larger size in each dimension and treats what a tensor lacks as zeros (channels, rows and
    /// columns past its end).
    AddPrev(u8),
    Fc(Fc),
}

/// A convolution: `filters` x `channels` x `size` x `size` weights (dlib's and ONNX's layout), square
/// stride and padding.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Conv {
    pub filters: usize,
    pub channels: usize,
    pub size: usize,
    pub stride: usize,
    pub padding: usize,
    pub weights: Vec<f32>,
    /// One per filter; None when the file says the layer has no bias.
    pub bias: Option<Vec<f32>>,
    /// dlib applies a relu to the output itself (con_6's use_relu, set when dlib fuses layers).
    pub relu: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Affine {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

/// A pooling window: square, with square stride and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pool {
    pub size: usize,
    pub stride: usize,
    pub padding: usize,
}

/// A fully connected layer without bias: `inputs` x `outputs` weights, as dlib stores them (the input
/// row times this matrix is the output).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fc {
    pub inputs: usize,
    pub outputs: usize,
    pub weights: Vec<f32>,
}

/// Channels, rows, columns of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    /// The shape dlib's add_prev gives: the larger of the two in each dimension.
    pub(crate) fn max(self, other: Shape) -> Shape {
        Shape {
            c: self.c.max(other.c),
            h: self.h.max(other.h),
            w: self.w.max(other.w),
        }
    }

    fn len(self) -> usize {
        self.c * self.h * self.w
    }
}

/// Output side of a window of `size` moved by `stride` over `side` values padded by `padding` on each
/// side (dlib's `1 + (side + 2*padding - size) / stride`), or None when the window does not fit.
pub(crate) fn out_side(side: usize, size: usize, stride: usize, padding: usize) -> Option<usize> {
    let padded = side.checked_add(2 * padding)?;
    let room = padded.checked_sub(size)?;
    Some(room / stride.max(1) + 1)
}

/// The most recent output of each tag number (dlib has tag1 to tag10), while walking the layers.
pub(crate) struct Tags<T>([Option<T>; 11]);

impl<T: Clone> Tags<T> {
    pub(crate) fn new() -> Tags<T> {
        Tags(Default::default())
    }

    pub(crate) fn set(&mut self, id: u8, value: T) {
        if let Some(slot) = self.0.get_mut(usize::from(id)) {
            *slot = Some(value);
        }
    }

    pub(crate) fn get(&self, id: u8) -> Option<T> {
        self.0.get(usize::from(id)).cloned().flatten()
    }
}

/// dlib's face recognition network, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// input_rgb_image_sized's per-channel means, red, green, blue: the input is `(pixel - mean) / 256`.
    pub(crate) means: [f32; 3],
    pub(crate) layers: Vec<Layer>,
    /// loss_metric's training settings, kept for display only: they do not change the embedding.
    pub(crate) margin: f32,
    pub(crate) distance_threshold: f32,
}

impl Network {
    /// The per-channel means (red, green, blue) the network subtracts from each pixel before dividing
    /// by 256.
    pub fn input_means(&self) -> [f32; 3] {
        self.means
    }

    /// The number of learnt values (convolution weights and biases, affine scales and shifts, the
    /// final projection).
    pub fn parameter_count(&self) -> usize {
        self.layers
            .iter()
            .map(|l| match l {
                Layer::Conv(c) => c.weights.len() + c.bias.as_ref().map_or(0, Vec::len),
                Layer::Affine(a) => a.gamma.len() + a.beta.len(),
                Layer::Fc(f) => f.weights.len(),
                _ => 0,
            })
            .sum()
    }

    /// The number of convolutions (29 in dlib's network).
    pub fn convolution_count(&self) -> usize {
        self.layers
            .iter()
            .filter(|l| matches!(l, Layer::Conv(_)))
            .count()
    }

    /// The loss layer's margin and distance threshold (dlib's loss_metric, used in training: a
    /// distance under the threshold is a match). They do not change the embedding.
    pub fn loss_settings(&self) -> (f32, f32) {
        (self.margin, self.distance_threshold)
    }
}

/// One layer of anet_type as its template spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spec {
    Con {
        filters: usize,
        size: usize,
        stride: usize,
    },
    Affine,
    Relu,
    MaxPool {
        size: usize,
        stride: usize,
    },
    AvgPool {
        size: usize,
        stride: usize,
    },
    AvgPoolEverything,
    AddPrev(u8),
    Skip(u8),
    Tag(u8),
    Fc {
        outputs: usize,
    },
}

impl Spec {
    fn name(self) -> &'static str {
        match self {
            Spec::Con { .. } => "con",
            Spec::Affine => "affine",
            Spec::Relu => "relu",
            Spec::MaxPool { .. } => "max_pool",
            Spec::AvgPool { .. } => "avg_pool",
            Spec::AvgPoolEverything => "avg_pool_everything",
            Spec::AddPrev(_) => "add_prev",
            Spec::Skip(_) => "skip",
            Spec::Tag(_) => "tag",
            Spec::Fc { .. } => "fc_no_bias",
        }
    }

    /// Tags and skips are written by add_tag_layer and add_skip_layer (version 1, no parameters);
    /// everything else by add_layer.
    fn is_add_layer(self) -> bool {
        !matches!(self, Spec::Tag(_) | Spec::Skip(_))
    }
}

/// anet_type's layers from the top (dlib's layer<1>, under the loss) down to the convolution on the
/// input, transcribed from its definition:
///
/// ```text
/// block<N,BN,stride,SUBNET>  = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>
/// residual<block,N,BN,SUBNET> = add_prev1<block<N,BN,1,tag1<SUBNET>>>
/// residual_down<...>          = add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,BN,2,tag1<SUBNET>>>>>>
/// ares<N> = relu<residual<block,N,affine>>, ares_down<N> = relu<residual_down<block,N,affine>>
/// alevel0 = ares_down<256>; alevel1 = ares<256,ares<256,ares_down<256>>>;
/// alevel2 = ares<128,ares<128,ares_down<128>>>; alevel3 = ares<64,ares<64,ares<64,ares_down<64>>>>;
/// alevel4 = ares<32,ares<32,ares<32>>>
/// anet_type = loss_metric<fc_no_bias<128,avg_pool_everything<alevel0<alevel1<alevel2<alevel3<alevel4<
///             max_pool<3,3,2,2,relu<affine<con<32,7,7,2,2,input_rgb_image_sized<150>>>>>>>>>>>>>
/// ```
pub(crate) fn anet_type() -> Vec<Spec> {
    fn block(out: &mut Vec<Spec>, n: usize, stride: usize) {
        out.extend([
            Spec::Affine,
            Spec::Con {
                filters: n,
                size: 3,
                stride: 1,
            },
            Spec::Relu,
            Spec::Affine,
            Spec::Con {
                filters: n,
                size: 3,
                stride,
            },
        ]);
    }
    fn ares(out: &mut Vec<Spec>, n: usize) {
        out.extend([Spec::Relu, Spec::AddPrev(1)]);
        block(out, n, 1);
        out.push(Spec::Tag(1));
    }
    fn ares_down(out: &mut Vec<Spec>, n: usize) {
        out.extend([
            Spec::Relu,
            Spec::AddPrev(2),
            Spec::AvgPool { size: 2, stride: 2 },
            Spec::Skip(1),
            Spec::Tag(2),
        ]);
        block(out, n, 2);
        out.push(Spec::Tag(1));
    }
    let mut out = vec![
        Spec::Fc {
            outputs: EMBEDDING_LEN,
        },
        Spec::AvgPoolEverything,
    ];
    ares_down(&mut out, 256);
    for (n, plain) in [(256, 2), (128, 2), (64, 3)] {
        for _ in 0..plain {
            ares(&mut out, n);
        }
        ares_down(&mut out, n);
    }
    for _ in 0..3 {
        ares(&mut out, 32);
    }
    out.extend([
        Spec::MaxPool { size: 3, stride: 2 },
        Spec::Relu,
        Spec::Affine,
        Spec::Con {
            filters: 32,
            size: 7,
            stride: 2,
        },
    ]);
    out
}

/// dlib's default padding for con, max_pool and avg_pool: none for strided windows, half the window
/// otherwise.
fn default_padding(size: usize, stride: usize) -> usize {
    if stride != 1 {
        0
    } else {
        size / 2
    }
}

/// Read dlib's serialisation of anet_type.
pub(crate) fn read(bytes: &[u8]) -> Result<Network, DlibError> {
    let mut r = Reader::new(bytes);
    let specs = anet_type();

    // add_loss_layer: version, the loss, then the network under it.
    expect_int(&mut r, "layer<0> loss_metric: add_loss_layer version", &[1])?;
    let loss = r.version("layer<0> loss_metric", &["loss_metric_", "loss_metric_2"])?;
    let (margin, distance_threshold) = if loss == 1 {
        (
            r.f32("layer<0> loss_metric: margin")?,
            r.f32("layer<0> loss_metric: distance threshold")?,
        )
    } else {
        // dlib's values for the version that did not store them.
        (0.1, 0.75)
    };

    // The versions, top-down. The lowest add_layer sits on the input layer and is written by dlib's
    // add_layer for input layers, whose versions are 2 and 3.
    let mut versions = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let what = format!("layer<{}> {}: version", i + 1, spec.name());
        let accepted: &[i64] = if !spec.is_add_layer() {
            &[1]
        } else if i + 1 == specs.len() {
            &[2, 3]
        } else {
            &[1, 2]
        };
        versions.push(expect_int(&mut r, &what, accepted)?);
    }

    let means = read_input(&mut r, specs.len() + 1)?;

    // The parameters, bottom-up: the order the layers run in.
    let mut shape = Shape {
        c: 3,
        h: CHIP_SIDE,
        w: CHIP_SIDE,
    };
    let mut tags: Tags<Shape> = Tags::new();
    let mut layers = Vec::with_capacity(specs.len());
    for (i, (spec, version)) in specs.iter().zip(&versions).enumerate().rev() {
        let label = format!("layer<{}> {}", i + 1, spec.name());
        let layer = match *spec {
            Spec::Tag(id) => Layer::Tag(id),
            Spec::Skip(id) => Layer::Skip(id),
            spec => {
                let layer = read_layer(&mut r, &label, spec, shape)?;
                read_state(&mut r, &label, *version, i + 1 == specs.len())?;
                layer
            }
        };
        shape = output_shape(&layer, shape, &mut tags).ok_or_else(|| DlibError::Invalid {
            offset: r.offset(),
            what: label,
            reason: format!("the layer cannot take an input of shape {shape:?}"),
        })?;
        layers.push(layer);
    }

    if r.remaining() != 0 {
        return Err(DlibError::TrailingBytes {
            offset: r.offset(),
            extra: r.remaining(),
        });
    }
    let expected = Shape {
        c: EMBEDDING_LEN,
        h: 1,
        w: 1,
    };
    if shape != expected {
        return Err(DlibError::Invalid {
            offset: r.offset(),
            what: "network output".to_string(),
            reason: format!("shape {shape:?}, expected {expected:?}"),
        });
    }
    Ok(Network {
        means,
        layers,
        margin,
        distance_threshold,
    })
}

/// The shape `layer` gives for an input of `shape`, recording tags; None when the layer cannot take
/// that input.
pub(crate) fn output_shape(layer: &Layer, shape: Shape, tags: &mut Tags<Shape>) -> Option<Shape> {
    match layer {
        Layer::Conv(c) => {
            if c.channels != shape.c {
                return None;
            }
            Some(Shape {
                c: c.filters,
                h: out_side(shape.h, c.size, c.stride, c.padding)?,
                w: out_side(shape.w, c.size, c.stride, c.padding)?,
            })
        }
        Layer::Affine(a) => (a.gamma.len() == shape.c).then_some(shape),
        Layer::Relu | Layer::Pass => Some(shape),
        Layer::MaxPool(p) | Layer::AvgPool(p) => Some(Shape {
            c: shape.c,
            h: out_side(shape.h, p.size, p.stride, p.padding)?,
            w: out_side(shape.w, p.size, p.stride, p.padding)?,
        }),
        Layer::GlobalAvgPool => Some(Shape {
            c: shape.c,
            h: 1,
            w: 1,
        }),
        Layer::Tag(id) => {
            tags.set(*id, shape);
            Some(shape)
        }
        Layer::Skip(id) => tags.get(*id),
        Layer::AddPrev(id) => tags.get(*id).map(|t| t.max(shape)),
        Layer::Fc(f) => (f.inputs == shape.len()).then_some(Shape {
            c: f.outputs,
            h: 1,
            w: 1,
        }),
    }
}

/// An int that must be one of `accepted`.
fn expect_int(r: &mut Reader, what: &str, accepted: &[i64]) -> Result<i64, DlibError> {
    let at = r.offset();
    let value = r.int(what)?;
    if accepted.contains(&value) {
        Ok(value)
    } else {
        Err(mismatch(at, what, accepted, value))
    }
}

/// A long that must equal `expected` (a hyperparameter fixed by anet_type).
fn expect_long(r: &mut Reader, what: &str, expected: usize) -> Result<(), DlibError> {
    let at = r.offset();
    let value = r.long(what)?;
    if usize::try_from(value) == Ok(expected) {
        Ok(())
    } else {
        Err(mismatch(at, what, &[expected], value))
    }
}

fn mismatch<E: std::fmt::Display, F: std::fmt::Display>(
    offset: usize,
    what: &str,
    expected: &[E],
    found: F,
) -> DlibError {
    DlibError::Mismatch {
        offset,
        what: what.to_string(),
        expected: expected
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(" or "),
        found: found.to_string(),
    }
}

/// An alias tensor (a view of a layer's parameters) that must have shape `expected`.
fn expect_alias(r: &mut Reader, what: &str, expected: [usize; 4]) -> Result<(), DlibError> {
    let at = r.offset();
    let dims = r.alias(what)?;
    if dims
        .iter()
        .zip(expected)
        .all(|(&d, e)| usize::try_from(d) == Ok(e))
    {
        Ok(())
    } else {
        Err(mismatch(
            at,
            what,
            &[format!("{expected:?}")],
            format!("{dims:?}"),
        ))
    }
}

/// input_rgb_image_sized<150>: its name, the red, green and blue means, then rows and columns.
fn read_input(r: &mut Reader, index: usize) -> Result<[f32; 3], DlibError> {
    let label = format!("layer<{index}> input_rgb_image_sized");
    r.version(&label, &["input_rgb_image_sized"])?;
    let mut means = [0f32; 3];
    for (mean, colour) in means.iter_mut().zip(["red", "green", "blue"]) {
        let at = r.offset();
        let what = format!("{label}: {colour} mean");
        *mean = r.f32(&what)?;
        if !(0.0..=255.0).contains(mean) {
            return Err(DlibError::Invalid {
                offset: at,
                what,
                reason: format!("{mean} is not a pixel value"),
            });
        }
    }
    for side in ["rows", "columns"] {
        let at = r.offset();
        let what = format!("{label}: {side}");
        let value = r.unsigned_long(&what)?;
        if value != CHIP_SIDE as u64 {
            return Err(mismatch(at, &what, &[CHIP_SIDE], value));
        }
    }
    Ok(means)
}

/// What add_layer writes after a layer's own parameters: three flags, then training-only tensors
/// (gradients, cached outputs), and for the add_layer on the input layer, in its version 3, the
/// sample expansion factor, which must be 1 for this network.
fn read_state(r: &mut Reader, label: &str, version: i64, on_input: bool) -> Result<(), DlibError> {
    for flag in [
        "this_layer_setup_called",
        "gradient_input_is_stale",
        "get_output_and_gradient_input_disabled",
    ] {
        r.bool(&format!("{label}: {flag}"))?;
    }
    r.skip_tensor(&format!("{label}: x_grad"))?;
    r.skip_tensor(&format!("{label}: cached_output"))?;
    if on_input {
        r.skip_tensor(&format!("{label}: grad_final"))?;
        if version >= 3 {
            let what = format!("{label}: sample_expansion_factor");
            let at = r.offset();
            let factor = r.unsigned_int(&what)?;
            if factor != 1 {
                return Err(mismatch(at, &what, &[1], factor));
            }
        }
    } else if version >= 2 {
        r.skip_tensor(&format!("{label}: params_grad"))?;
    }
    Ok(())
}

/// A layer's own serialisation, checked against its place in anet_type for an input of `shape`.
fn read_layer(r: &mut Reader, label: &str, spec: Spec, shape: Shape) -> Result<Layer, DlibError> {
    match spec {
        Spec::Con {
            filters,
            size,
            stride,
        } => read_con(r, label, filters, size, stride, shape.c).map(Layer::Conv),
        Spec::Affine => read_affine(r, label, shape.c),
        Spec::Relu => {
            let version = r.version(label, &["relu_", "relu_2"])?;
            let disabled = version == 1 && r.bool(&format!("{label}: disabled"))?;
            Ok(if disabled { Layer::Pass } else { Layer::Relu })
        }
        Spec::MaxPool { size, stride } => {
            read_pool(r, label, "max_pool_2", size, stride).map(Layer::MaxPool)
        }
        Spec::AvgPool { size, stride } => {
            read_pool(r, label, "avg_pool_2", size, stride).map(Layer::AvgPool)
        }
        // avg_pool_<0,0,1,1>: a window of 0 stands for the whole input.
        Spec::AvgPoolEverything => {
            read_pool(r, label, "avg_pool_2", 0, 1).map(|_| Layer::GlobalAvgPool)
        }
        Spec::AddPrev(id) => {
            r.version(label, &["add_prev_"])?;
            Ok(Layer::AddPrev(id))
        }
        Spec::Fc { outputs } => read_fc(r, label, outputs, shape.len()).map(Layer::Fc),
        Spec::Tag(id) => Ok(Layer::Tag(id)),
        Spec::Skip(id) => Ok(Layer::Skip(id)),
    }
}

/// con_ (versions con_4, con_5 with use_bias, con_6 with use_relu).
fn read_con(
    r: &mut Reader,
    label: &str,
    filters: usize,
    size: usize,
    stride: usize,
    channels: usize,
) -> Result<Conv, DlibError> {
    let version = r.version(label, &["con_4", "con_5", "con_6"])?;
    let weights_len = filters * channels * size * size;
    let params_at = r.offset();
    let mut params = r.parameters(
        &format!("{label}: parameters"),
        &[weights_len + filters, weights_len],
    )?;
    expect_long(r, &format!("{label}: num_filters"), filters)?;
    expect_long(r, &format!("{label}: nr"), size)?;
    expect_long(r, &format!("{label}: nc"), size)?;
    let stride_i = stride as i64;
    expect_int(r, &format!("{label}: stride_y"), &[stride_i])?;
    expect_int(r, &format!("{label}: stride_x"), &[stride_i])?;
    let padding = default_padding(size, stride);
    expect_int(r, &format!("{label}: padding_y"), &[padding as i64])?;
    expect_int(r, &format!("{label}: padding_x"), &[padding as i64])?;
    expect_alias(
        r,
        &format!("{label}: filters"),
        [filters, channels, size, size],
    )?;
    let biases_at = r.offset();
    let biases = r.alias(&format!("{label}: biases"))?;
    for m in [
        "learning_rate_multiplier",
        "weight_decay_multiplier",
        "bias_learning_rate_multiplier",
        "bias_weight_decay_multiplier",
    ] {
        r.f64(&format!("{label}: {m}"))?;
    }
    // con_4 predates use_bias: its convolutions always have one.
    let use_bias = version == 0 || r.bool(&format!("{label}: use_bias"))?;
    let relu = version == 2 && r.bool(&format!("{label}: use_relu"))?;

    let expected_len = weights_len + if use_bias { filters } else { 0 };
    if params.len() != expected_len {
        return Err(mismatch(
            params_at,
            &format!("{label}: number of parameters (use_bias {use_bias})"),
            &[expected_len],
            params.len(),
        ));
    }
    let bias_dims: [i64; 4] = if use_bias {
        [1, filters as i64, 1, 1]
    } else {
        [0; 4]
    };
    if biases != bias_dims {
        return Err(mismatch(
            biases_at,
            &format!("{label}: biases"),
            &[format!("{bias_dims:?}")],
            format!("{biases:?}"),
        ));
    }
    let bias = use_bias.then(|| params.split_off(weights_len));
    Ok(Conv {
        filters,
        channels,
        size,
        stride,
        padding,
        weights: params,
        bias,
        relu,
    })
}

/// affine_ (versions affine_ and affine_2 with its disabled flag), in CONV_MODE: one scale and one
/// shift per channel. dlib would also turn a batch-norm layer (bn_con2) into an affine one here; that is
/// the training network, not anet_type, and is refused by name.
fn read_affine(r: &mut Reader, label: &str, channels: usize) -> Result<Layer, DlibError> {
    let version = r.version(label, &["affine_", "affine_2"])?;
    let params_at = r.offset();
    // A disabled affine_2 has had its parameters cleared.
    let params = r.parameters(&format!("{label}: parameters"), &[2 * channels, 0])?;
    expect_alias(r, &format!("{label}: gamma"), [1, channels, 1, 1])?;
    expect_alias(r, &format!("{label}: beta"), [1, channels, 1, 1])?;
    // layer_mode: CONV_MODE is 0.
    expect_int(r, &format!("{label}: mode (CONV_MODE)"), &[0])?;
    let disabled = version == 1 && r.bool(&format!("{label}: disabled"))?;
    if disabled {
        return Ok(Layer::Pass);
    }
    if params.len() != 2 * channels {
        return Err(mismatch(
            params_at,
            &format!("{label}: number of parameters"),
            &[2 * channels],
            params.len(),
        ));
    }
    let mut gamma = params;
    let beta = gamma.split_off(channels);
    Ok(Layer::Affine(Affine { gamma, beta }))
}

/// max_pool_ and avg_pool_ ("max_pool_2", "avg_pool_2"): window, stride and padding, all fixed by
/// anet_type.
fn read_pool(
    r: &mut Reader,
    label: &str,
    name: &str,
    size: usize,
    stride: usize,
) -> Result<Pool, DlibError> {
    r.version(label, &[name])?;
    expect_long(r, &format!("{label}: nr"), size)?;
    expect_long(r, &format!("{label}: nc"), size)?;
    expect_int(r, &format!("{label}: stride_y"), &[stride as i64])?;
    expect_int(r, &format!("{label}: stride_x"), &[stride as i64])?;
    let padding = default_padding(size, stride);
    expect_int(r, &format!("{label}: padding_y"), &[padding as i64])?;
    expect_int(r, &format!("{label}: padding_x"), &[padding as i64])?;
    Ok(Pool {
        size,
        stride,
        padding,
    })
}

/// fc_ in FC_NO_BIAS mode (versions fc_2 and fc_3 with use_bias, which this mode ignores).
fn read_fc(r: &mut Reader, label: &str, outputs: usize, inputs: usize) -> Result<Fc, DlibError> {
    let version = r.version(label, &["fc_2", "fc_3"])?;
    for (what, expected) in [("num_outputs", outputs), ("num_inputs", inputs)] {
        let what = format!("{label}: {what}");
        let at = r.offset();
        let value = r.unsigned_long(&what)?;
        if value != expected as u64 {
            return Err(mismatch(at, &what, &[expected], value));
        }
    }
    let weights = r.parameters(&format!("{label}: weights"), &[inputs * outputs])?;
    expect_alias(
        r,
        &format!("{label}: weights view"),
        [inputs, outputs, 1, 1],
    )?;
    // Never set up without a bias: dlib's empty alias.
    expect_alias(r, &format!("{label}: biases view"), [0, 0, 0, 0])?;
    // fc_bias_mode: FC_NO_BIAS is 1.
    expect_int(r, &format!("{label}: bias mode (FC_NO_BIAS)"), &[1])?;
    for m in [
        "learning_rate_multiplier",
        "weight_decay_multiplier",
        "bias_learning_rate_multiplier",
        "bias_weight_decay_multiplier",
    ] {
        r.f64(&format!("{label}: {m}"))?;
    }
    if version == 1 {
        r.bool(&format!("{label}: use_bias"))?;
    }
    Ok(Fc {
        inputs,
        outputs,
        weights,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anet_type_has_dlibs_layer_count() {
        // With the loss and the input layer: layer<0> to layer<131>, as dlib numbers them.
        let specs = anet_type();
        assert_eq!(specs.len() + 2, 132);
        let convs = specs
            .iter()
            .filter(|s| matches!(s, Spec::Con { .. }))
            .count();
        assert_eq!(convs, 29);
    }

    #[test]
    fn window_sides_follow_dlib() {
        assert_eq!(out_side(150, 7, 2, 0), Some(72));
        assert_eq!(out_side(72, 3, 2, 0), Some(35));
        assert_eq!(out_side(8, 3, 2, 0), Some(3));
        assert_eq!(out_side(8, 2, 2, 0), Some(4));
        assert_eq!(out_side(2, 3, 1, 0), None);
    }

    #[test]
    fn an_empty_file_is_an_error() {
        assert!(matches!(
            read(&[]),
            Err(DlibError::Truncated { offset: 0, .. })
        ));
    }
}
