//! Folding an int8 (QDQ) graph into plain fp32 while it is still a protobuf.
//!
//! The compressed (int8) embedder stores its weights as int8 with per-channel scales, in ONNX QDQ form.
//! Handing that graph to tract as it is costs about 250 ms of graph rewriting at every load, which a
//! login cannot afford. So the weights are dequantised here, while the protobuf is still plain data,
//! and the activation fake-quantisation pairs are dropped: the network then runs in fp32 with the
//! int8-rounded weights, loads as fast as the fp32 file, and is four times smaller on disk.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{GraphProto, ModelProto, NodeProto, TensorProto};
use tract_onnx::prelude::*;

/// Weights dequantised by [`fold_quantisation`], by initialiser name. The protobuf holds a
/// one-value placeholder under each name until the weight replaces it.
pub(super) type FoldedWeights = Vec<(String, Tensor)>;

/// A placeholder initialiser: one value, distinct for each weight (tract merges equal constants).
fn placeholder(name: &str, index: usize) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        data_type: ONNX_FLOAT,
        float_data: vec![index as f32],
        ..Default::default()
    }
}

/// Put folded weights into the graph tract parsed, in place of their placeholders.
pub(super) fn install_weights(
    model: &mut InferenceModel,
    weights: FoldedWeights,
) -> TractResult<()> {
    for (name, tensor) in weights {
        let tensor = tensor.into_arc_tensor();
        let fact = TypedFact::try_from(tensor.clone())?;
        let node = model.node_by_name_mut(&name)?;
        if !node.op_is::<tract_onnx::tract_hir::ops::konst::Const>() || node.outputs.len() != 1 {
            return Err(TractError::msg(format!(
                "folded weight {name} is not a constant in the graph"
            )));
        }
        node.op = Box::new(tract_onnx::tract_hir::ops::konst::Const::new(tensor)?);
        node.outputs[0].fact = fact.into();
    }
    Ok(())
}

/// Write folded weights into the protobuf as ordinary fp32 initialisers.
pub(super) fn inline_weights(proto: &mut ModelProto, weights: FoldedWeights) {
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    let mut weights: HashMap<String, Tensor> = weights.into_iter().collect();
    for init in &mut graph.initializer {
        if let Some(tensor) = weights.remove(&init.name) {
            let view = tensor.try_as_plain_ram();
            let values = view
                .as_ref()
                .map_or(Ok(&[][..]), |v| v.as_slice::<f32>())
                .unwrap_or(&[]);
            *init = TensorProto {
                name: std::mem::take(&mut init.name),
                data_type: ONNX_FLOAT,
                dims: tensor.shape().iter().map(|&d| d as i64).collect(),
                raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ..Default::default()
            };
        }
    }
}

// ONNX TensorProto data types used by QDQ graphs.
const ONNX_FLOAT: i32 = 1;
const ONNX_UINT8: i32 = 2;
const ONNX_INT8: i32 = 3;
const ONNX_INT32: i32 = 6;

/// Rewrite a QDQ graph into plain fp32: every DequantizeLinear of a constant becomes an fp32
/// weight (returned, with a placeholder initialiser left in the graph under its name); every
/// QuantizeLinear -> DequantizeLinear pair on an activation is removed.
/// A graph without quantisation is left as it is.
pub(super) fn fold_quantisation(proto: &mut ModelProto) -> Result<FoldedWeights, String> {
    let Some(graph) = proto.graph.as_mut() else {
        return Err("the file holds no graph".into());
    };
    if !graph.node.iter().any(|n| n.op_type == "DequantizeLinear") {
        return Ok(Vec::new());
    }
    let mut inits: HashMap<String, TensorProto> = graph
        .initializer
        .drain(..)
        .map(|t| (t.name.clone(), t))
        .collect();

    // 1. Constant dequantisation -> fp32 weights.
    let mut weights: FoldedWeights = Vec::new();
    let mut kept = Vec::with_capacity(graph.node.len());
    for node in graph.node.drain(..) {
        let constant = node.op_type == "DequantizeLinear"
            && node
                .input
                .iter()
                .all(|i| i.is_empty() || inits.contains_key(i));
        if constant {
            let name = node.output[0].clone();
            let tensor = dequantise(&node, &inits)?;
            inits.insert(name.clone(), placeholder(&name, weights.len()));
            weights.push((name, tensor));
        } else {
            kept.push(node);
        }
    }

    // 2. Activation Q -> DQ pairs. The quantiser fused each ReLU into the quantisation range of its
    //    output (a range starting at zero clips negatives), so a pair whose range starts at zero
    //    becomes that ReLU again; any other pair is dropped and its consumers read the Q input.
    let producers: HashMap<String, usize> = kept
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op_type == "QuantizeLinear")
        .map(|(i, n)| (n.output[0].clone(), i))
        .collect();
    let mut rename: HashMap<String, String> = HashMap::new();
    let mut replace: HashMap<usize, NodeProto> = HashMap::new();
    let mut drop = vec![false; kept.len()];
    for (i, node) in kept.iter().enumerate() {
        if node.op_type != "DequantizeLinear" {
            continue;
        }
        let Some(&q) = producers.get(&node.input[0]) else {
            return Err(format!(
                "DequantizeLinear '{}' of a non-constant, non-quantised input",
                node.name
            ));
        };
        drop[q] = true;
        let quantiser = &kept[q];
        if range_starts_at_zero(quantiser, &inits)? {
            replace.insert(
                i,
                NodeProto {
                    name: format!("{}_relu", node.output[0]),
                    op_type: "Relu".into(),
                    input: vec![quantiser.input[0].clone()],
                    output: vec![node.output[0].clone()],
                    ..Default::default()
                },
            );
        } else {
            rename.insert(node.output[0].clone(), quantiser.input[0].clone());
            drop[i] = true;
        }
    }
    let resolve = |name: &String| -> String {
        let mut n = name.clone();
        while let Some(next) = rename.get(&n) {
            n = next.clone();
        }
        n
    };
    let mut nodes: Vec<NodeProto> = Vec::with_capacity(kept.len());
    for (i, node) in kept.into_iter().enumerate() {
        if let Some(relu) = replace.remove(&i) {
            nodes.push(relu);
        } else if !drop[i] {
            nodes.push(node);
        }
    }
    for node in &mut nodes {
        for input in &mut node.input {
            *input = resolve(input);
        }
        if node.op_type == "QuantizeLinear" || node.op_type == "DequantizeLinear" {
            return Err(format!("unpaired {} '{}'", node.op_type, node.name));
        }
    }
    // A graph output that was a dropped DQ keeps its name: route it through an Identity.
    for output in &graph.output {
        let source = resolve(&output.name);
        if source != output.name {
            nodes.push(NodeProto {
                name: format!("{}_identity", output.name),
                op_type: "Identity".into(),
                input: vec![source],
                output: vec![output.name.clone()],
                ..Default::default()
            });
        }
    }
    // Keep only the initialisers something still reads.
    let used: HashSet<&String> = nodes.iter().flat_map(|n| n.input.iter()).collect();
    graph.initializer = inits
        .into_values()
        .filter(|t| used.contains(&t.name))
        .collect();
    weights.retain(|(name, _)| used.contains(name));
    graph.node = nodes;
    graph.value_info.clear();
    graph.quantization_annotation.clear();
    prune_graph_inputs(graph);
    Ok(weights)
}

/// Whether a QuantizeLinear's range starts at zero: its zero point is the type's minimum.
fn range_starts_at_zero(
    q: &NodeProto,
    inits: &HashMap<String, TensorProto>,
) -> Result<bool, String> {
    let Some(zp) = q
        .input
        .get(2)
        .filter(|n| !n.is_empty())
        .and_then(|n| inits.get(n))
    else {
        // No zero point: uint8 with zero point 0, which starts at zero.
        return Ok(true);
    };
    let values = tensor_values(zp)?;
    let minimum = match zp.data_type {
        ONNX_UINT8 => 0.0,
        ONNX_INT8 => -128.0,
        other => {
            return Err(format!(
                "QuantizeLinear '{}' to unsupported type {other}",
                q.name
            ))
        }
    };
    Ok(values.iter().all(|&z| z == minimum))
}

/// Initialisers listed as graph inputs (older exporters do this) must not stay inputs once unused.
fn prune_graph_inputs(graph: &mut GraphProto) {
    let used: HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .collect();
    graph.input.retain(|i| used.contains(&i.name));
}

/// y = (x - zero_point) * scale, per tensor or per channel along `axis`.
fn dequantise(node: &NodeProto, inits: &HashMap<String, TensorProto>) -> Result<Tensor, String> {
    let get = |i: usize| {
        node.input
            .get(i)
            .filter(|n| !n.is_empty())
            .and_then(|n| inits.get(n))
    };
    let x = get(0).ok_or_else(|| format!("DequantizeLinear '{}' without data", node.name))?;
    let scale = get(1).ok_or_else(|| format!("DequantizeLinear '{}' without scale", node.name))?;
    let scales = tensor_values(scale)?;
    let zeros = match get(2) {
        Some(z) => tensor_values(z)?,
        None => vec![0.0; scales.len()],
    };
    if scales.is_empty() || zeros.len() != scales.len() {
        return Err(format!(
            "DequantizeLinear '{}': scale and zero point disagree",
            node.name
        ));
    }
    let dims: Vec<usize> = x.dims.iter().map(|&d| d.max(0) as usize).collect();
    let count: usize = dims.iter().product();
    let outer_stride = if scales.len() == 1 {
        count.max(1)
    } else {
        let axis_attr = node
            .attribute
            .iter()
            .find(|a| a.name == "axis")
            .map(|a| a.i)
            .unwrap_or(1);
        let rank = dims.len() as i64;
        let axis = if axis_attr < 0 {
            axis_attr + rank
        } else {
            axis_attr
        };
        if axis < 0 || axis >= rank || dims[axis as usize] != scales.len() {
            return Err(format!(
                "DequantizeLinear '{}': bad axis {axis_attr}",
                node.name
            ));
        }
        dims[axis as usize + 1..].iter().product()
    };
    // Written straight into a tensor of the final size, from the file's bytes as they are: the
    // whole tensor is never widened into a temporary (this runs at every login, and an f64 copy of
    // the weights would cost more in page faults than the arithmetic).
    let tract_err = |e: TractError| format!("{e:#}");
    let mut tensor = Tensor::zero::<f32>(&dims).map_err(tract_err)?;
    let mut view = tensor.try_as_plain_ram_mut().map_err(tract_err)?;
    let out = view.as_slice_mut::<f32>().map_err(tract_err)?;
    let block = Blocks {
        zeros: &zeros,
        scales: &scales,
        len: outer_stride.max(1),
    };
    let raw = &x.raw_data;
    let written = match x.data_type {
        ONNX_INT8 if raw.len() == count => block.dequantise_bytes(raw, true, out),
        ONNX_UINT8 if raw.len() == count => block.dequantise_bytes(raw, false, out),
        _ => block.dequantise(tensor_values(x)?.into_iter(), out),
    };
    if written != count {
        return Err(format!(
            "tensor '{}' holds {written} values for shape {:?}",
            x.name, x.dims
        ));
    }
    Ok(tensor)
}

/// Per-channel dequantisation parameters: channel `c` covers `len` consecutive values, channels
/// repeat along the outer axes.
struct Blocks<'a> {
    zeros: &'a [f64],
    scales: &'a [f64],
    len: usize,
}

impl Blocks<'_> {
    /// Write `(v - zero) * scale` of each value into `out`, computed in f64 and rounded once to
    /// f32; returns how many values there were (at most what `out` holds).
    fn dequantise(&self, values: impl Iterator<Item = f64>, out: &mut [f32]) -> usize {
        let (mut channel, mut in_block, mut written) = (0usize, 0usize, 0usize);
        for (v, slot) in values.zip(out.iter_mut()) {
            *slot = ((v - self.zeros[channel]) * self.scales[channel]) as f32;
            written += 1;
            in_block += 1;
            if in_block == self.len {
                in_block = 0;
                channel = (channel + 1) % self.scales.len();
            }
        }
        written
    }

    /// [`Blocks::dequantise`] of 8-bit values, a block at a time in f32 so the inner loop
    /// vectorises. The result is the same: an 8-bit zero point and an f32 scale are exact in f32,
    /// `v - zero` of two 8-bit integers is exact, and the product of an integer below 2^9 with a
    /// 24-bit mantissa is rounded once whichever precision computes it (a test checks every shipped
    /// weight against the f64 definition).
    fn dequantise_bytes(&self, raw: &[u8], signed: bool, out: &mut [f32]) -> usize {
        let mut written = 0;
        let blocks = raw.chunks(self.len).zip(out.chunks_mut(self.len));
        for (i, (src, dst)) in blocks.enumerate() {
            let channel = i % self.scales.len();
            let (zero, scale) = (self.zeros[channel] as f32, self.scales[channel] as f32);
            for (&b, slot) in src.iter().zip(dst.iter_mut()) {
                let v = if signed { b as i8 as f32 } else { b as f32 };
                *slot = (v - zero) * scale;
            }
            written += src.len().min(dst.len());
        }
        written
    }
}

/// The values of an int8, uint8, int32 or float tensor, as f64 (exact for all of them).
fn tensor_values(t: &TensorProto) -> Result<Vec<f64>, String> {
    let raw = &t.raw_data;
    let v: Vec<f64> = match t.data_type {
        ONNX_FLOAT if !raw.is_empty() => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
            .collect(),
        ONNX_FLOAT => t.float_data.iter().map(|&x| x as f64).collect(),
        ONNX_INT8 if !raw.is_empty() => raw.iter().map(|&b| b as i8 as f64).collect(),
        ONNX_UINT8 if !raw.is_empty() => raw.iter().map(|&b| b as f64).collect(),
        ONNX_INT8 | ONNX_UINT8 => t.int32_data.iter().map(|&x| x as f64).collect(),
        ONNX_INT32 if !raw.is_empty() => raw
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
            .collect(),
        ONNX_INT32 => t.int32_data.iter().map(|&x| x as f64).collect(),
        other => {
            return Err(format!(
                "tensor '{}' has unsupported data type {other}",
                t.name
            ))
        }
    };
    let expected: i64 = t.dims.iter().product();
    if v.len() as i64 != expected {
        return Err(format!(
            "tensor '{}' holds {} values for shape {:?}",
            t.name,
            v.len(),
            t.dims
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use prost::Message;

    use super::*;
    use crate::models::EMBEDDER_INT8;

    /// The plain definition of DequantizeLinear, element by element with an index division: what
    /// the streaming `dequantise` must reproduce bit for bit.
    fn reference(node: &NodeProto, inits: &HashMap<String, TensorProto>) -> Vec<f32> {
        let get = |i: usize| inits.get(&node.input[i]).unwrap();
        let x = tensor_values(get(0)).unwrap();
        let scales = tensor_values(get(1)).unwrap();
        let zeros = tensor_values(get(2)).unwrap();
        let dims: Vec<usize> = get(0).dims.iter().map(|&d| d as usize).collect();
        let axis = node
            .attribute
            .iter()
            .find(|a| a.name == "axis")
            .map_or(1, |a| a.i) as usize;
        let inner: usize = if scales.len() == 1 {
            x.len()
        } else {
            dims[axis + 1..].iter().product()
        };
        x.iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = (i / inner) % scales.len();
                ((v - zeros[c]) * scales[c]) as f32
            })
            .collect()
    }

    #[test]
    fn shipped_int8_weights_dequantise_to_the_exact_values() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(EMBEDDER_INT8.file_name);
        let bytes = std::fs::read(&path).unwrap();
        let proto = ModelProto::decode(&bytes[..]).unwrap();
        let graph = proto.graph.unwrap();
        let inits: HashMap<String, TensorProto> = graph
            .initializer
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        let mut checked = 0;
        let mut per_channel = 0;
        for node in graph
            .node
            .iter()
            .filter(|n| n.op_type == "DequantizeLinear" && inits.contains_key(&n.input[0]))
        {
            let folded = dequantise(node, &inits).unwrap();
            let view = folded.try_as_plain_ram().unwrap();
            let got = view.as_slice::<f32>().unwrap();
            let want = reference(node, &inits);
            assert_eq!(got.len(), want.len(), "{}", node.name);
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{}: dequantised weights differ",
                node.name
            );
            checked += 1;
            per_channel += usize::from(
                tensor_values(inits.get(&node.input[1]).unwrap())
                    .unwrap()
                    .len()
                    > 1,
            );
        }
        // The embedder has one quantised weight tensor per convolution and its fully connected layer.
        assert!(
            checked >= 29,
            "only {checked} constant DequantizeLinear nodes"
        );
        assert!(per_channel >= 29, "only {per_channel} per-channel tensors");
    }

    #[test]
    fn a_short_quantised_tensor_is_refused() {
        let tensor = |name: &str, data_type: i32, dims: Vec<i64>, raw_data: Vec<u8>| TensorProto {
            name: name.into(),
            data_type,
            dims,
            raw_data,
            ..Default::default()
        };
        let mut inits = HashMap::new();
        inits.insert(
            "w".into(),
            tensor("w", ONNX_INT8, vec![2, 3], vec![1, 2, 3, 4, 5]),
        );
        inits.insert(
            "s".into(),
            tensor("s", ONNX_FLOAT, vec![], 0.5f32.to_le_bytes().to_vec()),
        );
        inits.insert("z".into(), tensor("z", ONNX_INT8, vec![], vec![0]));
        let node = NodeProto {
            name: "dq".into(),
            op_type: "DequantizeLinear".into(),
            input: vec!["w".into(), "s".into(), "z".into()],
            output: vec!["w_f".into()],
            ..Default::default()
        };
        let err = dequantise(&node, &inits).unwrap_err();
        assert!(err.contains("holds 5 values"), "{err}");
        // The same tensor with all six values is folded.
        inits.insert(
            "w".into(),
            tensor("w", ONNX_INT8, vec![2, 3], vec![2, 4, 6, 8, 10, 254]),
        );
        let folded = dequantise(&node, &inits).unwrap();
        assert_eq!(folded.shape(), [2, 3]);
        let view = folded.try_as_plain_ram().unwrap();
        assert_eq!(
            view.as_slice::<f32>().unwrap(),
            [1.0, 2.0, 3.0, 4.0, 5.0, -1.0]
        );
    }
}
