//! The ONNX graph equivalent to dlib's network, for facekey's embedder.
//!
//! Input `input`: [1, 3, 150, 150] float, RGB planes, pixel values 0 to 255, as facekey's embedder feeds
//! a chip. Output `embedding`: [1, 128] float, not normalised, what dlib's compute_face_descriptor
//! returns. Everything dlib does between the two is in the graph, with dlib's exact semantics:
//! - input_rgb_image_sized: `(pixel - mean) / 256` per channel (a subtraction, then a multiplication
//!   by 1/256, which is exact);
//! - each affine that follows a convolution is folded into its weights and bias (`w * gamma`,
//!   `b * gamma + beta`, computed in double and rounded once): the same function with one rounding
//!   fewer per value than dlib's two steps;
//! - convolutions and pooling windows with dlib's padding (none for the strided ones, so their
//!   outputs cover the input from its first row and column and drop what does not fill a window);
//! - add_prev of tensors of different shapes as dlib's tensor add does it: the result has the larger
//!   size in each dimension, and the missing channels, rows and columns of the smaller one count as
//!   zeros (a Pad at the end of each dimension before the Add);
//! - avg_pool_everything as GlobalAveragePool, fc_no_bias as a MatMul with dlib's weight matrix.
//!
//! Only operators tract-onnx runs (opset 13): Sub, Mul, Add, Conv, Relu, MaxPool, AveragePool, Pad,
//! GlobalAveragePool, Flatten, MatMul. The bytes depend only on the network: converting the same file
//! twice gives the same model, so its SHA-256 can be pinned.
//!
//! Never: change what the network computes, or write anything that depends on the time, the machine or
//! the facekey version.

use prost::Message;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::type_proto::{self, Tensor};
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

use super::network::{
    output_shape, Affine, Conv, Fc, Layer, Network, Pool, Shape, Tags, CHIP_SIDE, EMBEDDING_LEN,
};

/// The graph input's name.
pub const INPUT: &str = "input";
/// The graph output's name.
pub const OUTPUT: &str = "embedding";

/// ONNX IR version 7 goes with operator set 13.
const IR_VERSION: i64 = 7;
const OPSET: i64 = 13;

/// The model's bytes.
pub(crate) fn write(network: &Network) -> Vec<u8> {
    let mut g = Builder::default();
    let mut value = g.normalise(network.means);
    let mut shape = Shape {
        c: 3,
        h: CHIP_SIDE,
        w: CHIP_SIDE,
    };
    let mut shapes: Tags<Shape> = Tags::new();
    let mut values: Tags<String> = Tags::new();
    let layers = &network.layers;
    let mut i = 0;
    while i < layers.len() {
        // dlib numbers layers from the loss (layer<0>) down: the last one to run is layer<1>.
        let name = format!("layer{}", layers.len() - i);
        let mut consumed = 1;
        value = match &layers[i] {
            Layer::Conv(conv) => match layers.get(i + 1) {
                Some(Layer::Affine(affine)) if !conv.relu => {
                    consumed = 2;
                    g.conv(&format!("{name}_con_affine"), &value, conv, Some(affine))
                }
                _ => g.conv(&format!("{name}_con"), &value, conv, None),
            },
            Layer::Affine(affine) => g.affine(&format!("{name}_affine"), &value, affine),
            Layer::Relu => g.node("Relu", &format!("{name}_relu"), &[&value], vec![]),
            Layer::Pass => value,
            Layer::MaxPool(pool) => g.pool("MaxPool", &format!("{name}_max_pool"), &value, pool),
            Layer::AvgPool(pool) => {
                g.pool("AveragePool", &format!("{name}_avg_pool"), &value, pool)
            }
            Layer::GlobalAvgPool => g.node(
                "GlobalAveragePool",
                &format!("{name}_avg_pool_everything"),
                &[&value],
                vec![],
            ),
            Layer::Tag(id) => {
                values.set(*id, value.clone());
                value
            }
            // A network read by `read` has every tag before its use; the current value stands in
            // otherwise, which the shape check below would already have refused.
            Layer::Skip(id) => values.get(*id).unwrap_or(value),
            Layer::AddPrev(id) => match (values.get(*id), shapes.get(*id)) {
                (Some(prev), Some(prev_shape)) => {
                    let target = shape.max(prev_shape);
                    let a = g.pad_to(&format!("{name}_add_prev_pad_a"), &value, shape, target);
                    let b = g.pad_to(&format!("{name}_add_prev_pad_b"), &prev, prev_shape, target);
                    g.node("Add", &format!("{name}_add_prev"), &[&a, &b], vec![])
                }
                _ => value,
            },
            Layer::Fc(fc) => g.fc(&name, &value, fc),
        };
        for layer in &layers[i..i + consumed] {
            shape = output_shape(layer, shape, &mut shapes).unwrap_or(shape);
        }
        i += consumed;
    }
    g.rename(&value, OUTPUT);

    let graph = GraphProto {
        name: "dlib_face_recognition_resnet_model_v1".to_string(),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![value_info(INPUT, &[1, 3, CHIP_SIDE, CHIP_SIDE])],
        output: vec![value_info(OUTPUT, &[1, EMBEDDING_LEN])],
        doc_string: "dlib's face recognition ResNet (anet_type of dnn_face_recognition_ex.cpp), \
                     converted from dlib's serialisation by facekey"
            .to_string(),
        ..Default::default()
    };
    ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "facekey model import-dlib".to_string(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Nodes and initialisers, in the order they are added.
#[derive(Default)]
struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl Builder {
    /// A float initialiser; returns its name.
    fn floats(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        self.initializers.push(TensorProto {
            name: name.to_string(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name.to_string()
    }

    /// An int64 initialiser; returns its name.
    fn int64s(&mut self, name: &str, values: &[i64]) -> String {
        self.initializers.push(TensorProto {
            name: name.to_string(),
            dims: vec![values.len() as i64],
            data_type: DataType::Int64 as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name.to_string()
    }

    /// A node with one output named like the node; returns the output's name.
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> String {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![name.to_string()],
            name: name.to_string(),
            op_type: op.to_string(),
            attribute,
            ..Default::default()
        });
        name.to_string()
    }

    /// input_rgb_image_sized: `(x - mean) / 256`, the division written as the exact multiplication by
    /// 1/256.
    fn normalise(&mut self, means: [f32; 3]) -> String {
        let mean = self.floats("input_means", &[1, 3, 1, 1], &means);
        let scale = self.floats("input_scale", &[1], &[1.0 / 256.0]);
        let centred = self.node("Sub", "input_centred", &[INPUT, &mean], vec![]);
        self.node("Mul", "input_normalised", &[&centred, &scale], vec![])
    }

    /// A convolution, with the affine after it folded in when given, then its own relu when dlib fused
    /// one into it.
    fn conv(&mut self, name: &str, input: &str, conv: &Conv, affine: Option<&Affine>) -> String {
        let per_filter = conv.channels * conv.size * conv.size;
        let bias_of = |o: usize| conv.bias.as_ref().map_or(0.0, |b| f64::from(b[o]));
        let (weights, bias): (Vec<f32>, Vec<f32>) = match affine {
            Some(a) => (
                conv.weights
                    .chunks_exact(per_filter)
                    .zip(&a.gamma)
                    .flat_map(|(w, &g)| {
                        w.iter().map(move |&w| (f64::from(w) * f64::from(g)) as f32)
                    })
                    .collect(),
                (0..conv.filters)
                    .map(|o| (bias_of(o) * f64::from(a.gamma[o]) + f64::from(a.beta[o])) as f32)
                    .collect(),
            ),
            None => (
                conv.weights.clone(),
                (0..conv.filters).map(|o| bias_of(o) as f32).collect(),
            ),
        };
        let w = self.floats(
            &format!("{name}_weights"),
            &[conv.filters, conv.channels, conv.size, conv.size],
            &weights,
        );
        let b = self.floats(&format!("{name}_bias"), &[conv.filters], &bias);
        let (k, s, p) = (conv.size as i64, conv.stride as i64, conv.padding as i64);
        let out = self.node(
            "Conv",
            name,
            &[input, &w, &b],
            vec![
                ints("kernel_shape", &[k, k]),
                ints("strides", &[s, s]),
                ints("pads", &[p, p, p, p]),
            ],
        );
        if conv.relu {
            self.node("Relu", &format!("{name}_relu"), &[&out], vec![])
        } else {
            out
        }
    }

    /// An affine on its own: `x * gamma + beta` per channel.
    fn affine(&mut self, name: &str, input: &str, affine: &Affine) -> String {
        let c = affine.gamma.len();
        let gamma = self.floats(&format!("{name}_gamma"), &[1, c, 1, 1], &affine.gamma);
        let beta = self.floats(&format!("{name}_beta"), &[1, c, 1, 1], &affine.beta);
        let scaled = self.node("Mul", &format!("{name}_scale"), &[input, &gamma], vec![]);
        self.node("Add", name, &[&scaled, &beta], vec![])
    }

    /// MaxPool or AveragePool. dlib's windows start at `stride * i - padding` and only the values
    /// inside the input count (ONNX's count_include_pad = 0, its default).
    fn pool(&mut self, op: &str, name: &str, input: &str, pool: &Pool) -> String {
        let (k, s, p) = (pool.size as i64, pool.stride as i64, pool.padding as i64);
        self.node(
            op,
            name,
            &[input],
            vec![
                ints("kernel_shape", &[k, k]),
                ints("strides", &[s, s]),
                ints("pads", &[p, p, p, p]),
            ],
        )
    }

    /// `input` (of shape `from`) padded with zeros after its last channel, row and column to `to`, as
    /// dlib's tensor add reads a smaller tensor; the input itself when the shapes are equal.
    fn pad_to(&mut self, name: &str, input: &str, from: Shape, to: Shape) -> String {
        if from == to {
            return input.to_string();
        }
        let end = |a: usize, b: usize| b.saturating_sub(a) as i64;
        let pads = self.int64s(
            &format!("{name}_pads"),
            &[
                0,
                0,
                0,
                0,
                0,
                end(from.c, to.c),
                end(from.h, to.h),
                end(from.w, to.w),
            ],
        );
        self.node("Pad", name, &[input, &pads], vec![])
    }

    /// fc_no_bias: the input flattened (channels, rows, columns, as dlib reads it) times dlib's
    /// inputs x outputs matrix.
    fn fc(&mut self, name: &str, input: &str, fc: &Fc) -> String {
        let flat = self.node(
            "Flatten",
            &format!("{name}_flatten"),
            &[input],
            vec![int("axis", 1)],
        );
        let w = self.floats(
            &format!("{name}_fc_weights"),
            &[fc.inputs, fc.outputs],
            &fc.weights,
        );
        self.node("MatMul", &format!("{name}_fc"), &[&flat, &w], vec![])
    }

    /// Give the value `from` the name `to` wherever it appears.
    fn rename(&mut self, from: &str, to: &str) {
        for node in &mut self.nodes {
            for name in node.input.iter_mut().chain(node.output.iter_mut()) {
                if name == from {
                    *name = to.to_string();
                }
            }
        }
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

/// A float tensor value of a fixed shape.
fn value_info(name: &str, dims: &[usize]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(dimension::Value::DimValue(d as i64)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
