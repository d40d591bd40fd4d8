//! dlib serialisations of anet_type written from scratch, with pseudo-random weights, for the tests: the
//! forms of dlib's format that the real file does not use. dlib writes the same network in two ways
//! that must give the same embedding:
//! - `Form::Plain`: convolutions without bias (con_5, as dlib's disable_duplicative_biases leaves them),
//!   each followed by its affine_ and relu_; the oldest versions of the loss (loss_metric_), the
//!   add_layer (1) and the input add_layer (2); fc_3;
//! - `Form::Fused`: what dlib's fuse_layers writes: each affine folded into the convolution before it
//!   and disabled (affine_2, no parameters), each relu after such a pair fused into the convolution
//!   (con_6's use_relu) and disabled (relu_2); the newest versions elsewhere; fc_2.

use super::network::{anet_type, Spec, CHIP_SIDE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    Plain,
    Fused,
}

/// dlib's serialisation primitives, written.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn packed(&mut self, magnitude: u64, negative: bool) {
        let bytes = magnitude.to_le_bytes();
        let size = (8 - magnitude.leading_zeros() as usize / 8).max(1);
        self.0.push(size as u8 | if negative { 0x80 } else { 0 });
        self.0.extend(&bytes[..size]);
    }

    fn int(&mut self, v: i64) {
        self.packed(v.unsigned_abs(), v < 0);
    }

    fn unsigned(&mut self, v: u64) {
        self.packed(v, false);
    }

    fn string(&mut self, s: &str) {
        self.unsigned(s.len() as u64);
        self.0.extend(s.as_bytes());
    }

    fn bool(&mut self, b: bool) {
        self.0.push(if b { b'1' } else { b'0' });
    }

    /// A float_details: the float's exact mantissa and exponent.
    fn float(&mut self, v: f32) {
        let (mantissa, exponent) = if v == 0.0 {
            (0, 0)
        } else {
            let bits = v.to_bits();
            let biased = ((bits >> 23) & 0xff) as i64;
            let fraction = i64::from(bits & 0x7f_ffff);
            let (m, e) = if biased == 0 {
                (fraction, -126 - 23)
            } else {
                (fraction | 0x80_0000, biased - 127 - 23)
            };
            (if v < 0.0 { -m } else { m }, e)
        };
        self.int(mantissa);
        self.int(exponent);
    }

    fn tensor(&mut self, dims: [i64; 4], values: &[f32]) {
        self.int(2);
        for d in dims {
            self.int(d);
        }
        for v in values {
            self.0.extend(v.to_le_bytes());
        }
    }

    fn alias(&mut self, dims: [i64; 4]) {
        self.int(1);
        for d in dims {
            self.int(d);
        }
    }

    fn multipliers(&mut self) {
        for v in [1.0, 1.0, 1.0, 0.0] {
            self.float(v);
        }
    }
}

/// Deterministic pseudo-random numbers (xorshift64*), one stream per layer.
pub(crate) struct Random(u64);

impl Random {
    pub(crate) fn new(seed: u64) -> Random {
        Random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// Uniform in [-1, 1).
    pub(crate) fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        x as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// anet_type in the given form. Both forms hold the same function: the fused form's convolutions are
/// the plain form's scaled by the affine's gamma, with its beta as their bias.
pub(crate) fn anet(form: Form) -> Vec<u8> {
    let specs = anet_type();
    let fused = form == Form::Fused;
    let mut out = Out::default();

    out.int(1);
    if fused {
        out.string("loss_metric_2");
        out.float(0.04);
        out.float(0.6);
    } else {
        out.string("loss_metric_");
    }
    for (i, spec) in specs.iter().enumerate() {
        out.int(match (spec, i + 1 == specs.len(), fused) {
            (Spec::Tag(_) | Spec::Skip(_), _, _) => 1,
            (_, true, f) => 2 + i64::from(f),
            (_, false, f) => 1 + i64::from(f),
        });
    }
    out.string("input_rgb_image_sized");
    for mean in [122.782, 117.001, 104.298] {
        out.float(mean);
    }
    out.unsigned(CHIP_SIDE as u64);
    out.unsigned(CHIP_SIDE as u64);

    // Channels as the layers run, with each tag's.
    let mut channels = 3usize;
    let mut tags = [0usize; 11];
    for (i, spec) in specs.iter().enumerate().rev() {
        let mut random = Random::new(i as u64);
        match *spec {
            Spec::Tag(id) => {
                tags[usize::from(id)] = channels;
                continue;
            }
            Spec::Skip(id) => {
                channels = tags[usize::from(id)];
                continue;
            }
            Spec::Con {
                filters,
                size,
                stride,
            } => {
                let fan_in = channels * size * size;
                let scale = (6.0 / fan_in as f32).sqrt();
                let weights: Vec<f32> = (0..filters * fan_in)
                    .map(|_| random.next() * scale)
                    .collect();
                // The affine that follows, generated from the same stream as when it is written.
                let (gamma, beta) = affine_values(&mut Random::new(i as u64 - 1), filters);
                let relu_follows =
                    i >= 2 && specs[i - 1] == Spec::Affine && specs[i - 2] == Spec::Relu;
                let padding = if stride != 1 { 0 } else { size / 2 } as i64;
                if fused {
                    out.string("con_6");
                    let mut params: Vec<f32> = weights
                        .chunks_exact(fan_in)
                        .zip(&gamma)
                        .flat_map(|(w, &g)| w.iter().map(move |&w| w * g))
                        .collect();
                    params.extend(&beta);
                    out.tensor([params.len() as i64, 1, 1, 1], &params);
                } else {
                    out.string("con_5");
                    out.tensor([weights.len() as i64, 1, 1, 1], &weights);
                }
                out.int(filters as i64);
                out.int(size as i64);
                out.int(size as i64);
                out.int(stride as i64);
                out.int(stride as i64);
                out.int(padding);
                out.int(padding);
                out.alias([filters as i64, channels as i64, size as i64, size as i64]);
                out.alias(if fused {
                    [1, filters as i64, 1, 1]
                } else {
                    [0; 4]
                });
                out.multipliers();
                out.bool(fused);
                if fused {
                    out.bool(relu_follows);
                }
                channels = filters;
            }
            Spec::Affine => {
                let (gamma, beta) = affine_values(&mut random, channels);
                let c = channels as i64;
                if fused {
                    out.string("affine_2");
                    out.tensor([0; 4], &[]);
                } else {
                    out.string("affine_");
                    let params: Vec<f32> = gamma.iter().chain(&beta).copied().collect();
                    out.tensor([2 * c, 1, 1, 1], &params);
                }
                out.alias([1, c, 1, 1]);
                out.alias([1, c, 1, 1]);
                out.int(0);
                if fused {
                    out.bool(true);
                }
            }
            Spec::Relu => {
                let after_con = specs.get(i + 1) == Some(&Spec::Affine)
                    && matches!(specs.get(i + 2), Some(Spec::Con { .. }));
                if fused {
                    out.string("relu_2");
                    out.bool(after_con);
                } else {
                    out.string("relu_");
                }
            }
            Spec::MaxPool { size, stride } => pool(&mut out, "max_pool_2", size, stride),
            Spec::AvgPool { size, stride } => pool(&mut out, "avg_pool_2", size, stride),
            Spec::AvgPoolEverything => pool(&mut out, "avg_pool_2", 0, 1),
            Spec::AddPrev(id) => {
                out.string("add_prev_");
                channels = channels.max(tags[usize::from(id)]);
            }
            Spec::Fc { outputs } => {
                let weights: Vec<f32> = (0..channels * outputs)
                    .map(|_| random.next() * 0.1)
                    .collect();
                out.string(if fused { "fc_2" } else { "fc_3" });
                out.unsigned(outputs as u64);
                out.unsigned(channels as u64);
                out.tensor([channels as i64, outputs as i64, 1, 1], &weights);
                out.alias([channels as i64, outputs as i64, 1, 1]);
                out.alias([0; 4]);
                out.int(1);
                out.multipliers();
                if !fused {
                    out.bool(false);
                }
                channels = outputs;
            }
        }
        // add_layer's state: flags, empty training tensors.
        let on_input = i + 1 == specs.len();
        out.bool(true);
        out.bool(true);
        out.bool(false);
        out.tensor([0; 4], &[]);
        out.tensor([0; 4], &[]);
        if on_input {
            out.tensor([0; 4], &[]);
            if fused {
                out.unsigned(1);
            }
        } else if fused {
            out.tensor([0; 4], &[]);
        }
    }
    out.0
}

/// An affine's gamma (around 1) and beta (around 0).
fn affine_values(random: &mut Random, channels: usize) -> (Vec<f32>, Vec<f32>) {
    let gamma = (0..channels).map(|_| 1.0 + 0.5 * random.next()).collect();
    let beta = (0..channels).map(|_| 0.1 * random.next()).collect();
    (gamma, beta)
}

fn pool(out: &mut Out, name: &str, size: usize, stride: usize) {
    out.string(name);
    out.int(size as i64);
    out.int(size as i64);
    out.int(stride as i64);
    out.int(stride as i64);
    let padding = if stride != 1 { 0 } else { size / 2 } as i64;
    out.int(padding);
    out.int(padding);
}
