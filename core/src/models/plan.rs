//! From verified model bytes to a plan tract can run: parse, fold ([`super::fold`]), fix the input shape,
//! optimise.

use std::path::Path;

use prost::Message;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use super::fold::{self, FoldedWeights};
use super::ModelError;
use crate::tract_knobs;

/// An ONNX model ready to run, for one fixed input shape.
pub type Plan = Arc<TypedRunnableModel>;

/// Parse verified bytes, fold int8 weights to fp32, fix the input shape, optimise. Each
/// intermediate form (file bytes, protobuf, unoptimised graph) is freed as soon as the next exists,
/// and folded weights go straight into the graph (never through the protobuf), so the weights exist
/// at most twice at once: as tract's tensors and as the optimised plan's packed copy.
pub fn build_plan(bytes: Vec<u8>, path: &Path, input_shape: &[usize]) -> Result<Plan, ModelError> {
    tract_knobs::pin()?;
    let (proto, weights) = decode_and_fold(&bytes, path)?;
    drop(bytes);
    let mut model = tract_onnx::onnx()
        .model_for_proto_model(&proto)
        .map_err(invalid(path))?;
    drop(proto);
    fold::install_weights(&mut model, weights).map_err(invalid(path))?;
    optimise(model, path, input_shape)
}

/// Parse verified bytes into a protobuf once, for models that are planned for several input shapes
/// (folded weights are written back into it).
pub fn parse_proto(bytes: &[u8], path: &Path) -> Result<ModelProto, ModelError> {
    let (mut proto, weights) = decode_and_fold(bytes, path)?;
    fold::inline_weights(&mut proto, weights);
    Ok(proto)
}

/// Decode an ONNX file and fold its quantisation ([`fold_quantisation`]).
fn decode_and_fold(bytes: &[u8], path: &Path) -> Result<(ModelProto, FoldedWeights), ModelError> {
    let mut proto = ModelProto::decode(bytes).map_err(|e| ModelError::Invalid {
        path: path.to_path_buf(),
        reason: format!("not an ONNX model: {e}"),
    })?;
    let weights = fold::fold_quantisation(&mut proto).map_err(|reason| ModelError::Invalid {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok((proto, weights))
}

/// Plan a parsed model for one input shape.
pub fn plan_proto(
    proto: &ModelProto,
    path: &Path,
    input_shape: &[usize],
) -> Result<Plan, ModelError> {
    tract_knobs::pin()?;
    let model = tract_onnx::onnx()
        .model_for_proto_model(proto)
        .map_err(invalid(path))?;
    optimise(model, path, input_shape)
}

/// Fix the input shape, optimise, make runnable: tract's `into_optimized`, with [`declutter`]'s
/// passes in place of tract's own.
fn optimise(model: InferenceModel, path: &Path, input_shape: &[usize]) -> Result<Plan, ModelError> {
    let mut model = model
        .with_input_fact(0, f32::fact(input_shape).into())
        .and_then(|m| m.into_typed())
        .map_err(invalid(path))?;
    declutter()
        .optimize(&mut model)
        .and_then(|()| model.optimize())
        .map_err(invalid(path))?;
    model.into_runnable().map_err(invalid(path))
}

/// The name tract's axis-changing declutter pass prints as.
pub const CHANGE_AXES_PASS: &str = "ChangeAxes";

/// tract's declutter passes, less ChangeAxes. That pass tries every axis of size 1 and every axis
/// move an operator suggests, throughout the graph; in the shipped models it only takes the batch
/// axis away, which changes no kernel: the plans run in the same time and give bit-identical
/// outputs (core/tests/models.rs), but it is a third of planning the detector (11 of 34 ms, paid by
/// every authentication process). Passes are matched by their printed name (tract exports no
/// type for them); a test checks the name still matches exactly one pass.
pub fn declutter() -> tract_onnx::tract_core::optim::Optimizer {
    let mut optimizer = tract_onnx::tract_core::optim::Optimizer::declutter();
    optimizer
        .passes
        .retain(|pass| format!("{pass:?}") != CHANGE_AXES_PASS);
    optimizer
}

/// A tract error about the model at `path`.
fn invalid(path: &Path) -> impl Fn(TractError) -> ModelError + '_ {
    move |e| ModelError::Invalid {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    }
}
