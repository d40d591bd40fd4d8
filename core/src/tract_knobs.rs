//! tract's runtime knobs, pinned so that no environment variable changes what the models compute.
//!
//! tract reads tuning switches from the process environment. Inside the PAM module that environment
//! belongs to whoever runs `sudo`, `su` or `login`: left alone, `TRACT_CPU_ISA=+sve2` panics the
//! model planner (an assertion: the attempt is lost), `TRACT_DISABLE_DIRECT_SPATIAL=1` changes the
//! detector's arithmetic, `TRACT_AMX_BF16=1` opts in to a lossy bf16 matrix product, and a forged
//! instruction set can hand the planner kernels the CPU cannot run (SIGILL kills the host).
//! [`pin`] runs before tract plans or parses any model ([`crate::models`] calls it) and fixes every
//! knob, so the decision is the same whatever the caller's environment holds.
//!
//! This module must never write a value to the environment that tract would not have computed
//! itself, and never touch a variable that is absent.
//!
//! # Every environment read in tract 0.23.9 (tract-data, -linalg, -core, -hir, -onnx, -onnx-opl,
//! # -nnef, -extra), and what facekey does about it
//!
//! Run time, through tract's knob registry (`tract_data::knobs`; `Knob::get` resolves a
//! programmatic override first, then a thread's scope, then `std::env::var(NAME)`, then a deploy
//! config, then the compiled default). facekey sets an override for each, so tract never reaches the
//! environment for them:
//!
//! | knob | read by | what it does | pinned to |
//! |---|---|---|---|
//! | `TRACT_CPU_ISA` | linalg `isa::native` (once, lazily) | edits the probed instruction set; a foreign feature panics, a missing one can select kernels the CPU lacks | `""`: no edit, the CPU as probed |
//! | `TRACT_AMX_BF16` | linalg x86_64 matmul tiers | lossy bf16 AMX matrix product | `false` |
//! | `TRACT_AVX512_FMA_UNITS` | linalg x86_64 (once) | 512-bit FMA port count; unset, a timing probe decides between two int8 VNNI tiles | `1`: no timing probe (facekey runs f32 only) |
//! | `TRACT_LLC_BYTES`, `TRACT_LLC_CONTENDED` | linalg `cache` | last-level cache size and kind | `""` (read from the OS), `false` |
//! | `TRACT_MMM_CHUNK_SLACK_BYTES` | linalg multithreaded matmul | chunking threshold | `1572864`, tract's own default |
//! | `TRACT_DOTPROD_DISABLE`, `TRACT_SVE_DISABLE`, `TRACT_SME_DISABLE` | linalg aarch64 | drop kernel families | `false` |
//! | `TRACT_DISABLE_DIRECT_SPATIAL`, `TRACT_ENABLE_BLOCKED_CONV`, `TRACT_DISABLE_BLOCKED_CONV`, `TRACT_LAZY_IM2COL_MIN_KERNEL`, `TRACT_LAZY_IM2COL_MAX_EAGER_BYTES` | core convolution codegen | convolution algorithm (changes the arithmetic) | tract's defaults (`false`, `false`, `false`, `6`, tract's default) |
//! | `TRACT_AVGPOOL_SEPARABLE` | core average pool | reassociated sum (not bit-identical) | `false` |
//! | `TRACT_DISABLE_DEPTHWISE_DECONV` | core deconvolution | fused depthwise path | `false` |
//! | `TRACT_MAX_SEATS`, `TRACT_TURN_LINGER_US` | core laned runtime | batching of streams | `256`, `0` |
//!
//! Knobs whose default is "unset" and whose type cannot say "unset" through an override (a value
//! that does not parse falls through to the environment). None of them is read by facekey's build
//! on x86_64, which is why they are left as they are ([`NOT_READ`] says why for each):
//! `TRACT_MMM_CHUNKS_PER_THREAD` (only with tract-linalg's `multithread-mm` feature, which facekey
//! does not enable; tract runs single-threaded here), `TRACT_AUTOBATCH_LANES` (the `deploy` runtime
//! only), `TRACT_CPU_AARCH64_KIND` and `TRACT_CPU_AARCH64_OVERRIDE_CPU_PART` (aarch64),
//! `TRACT_CPU_ARM32_NEON` (armv7), `TRACT_RISCV64_TLB_REFRESH_FMAS` (riscv64). On those
//! architectures [`pin`] refuses to load models while one of them is set in the environment.
//!
//! Run time, read directly with `std::env::var`:
//! - `TRACT_X86_KIND` (linalg `x86_64::vendor`, at every matrix-product kernel choice while a model
//!   is planned): `intel`, `amd` or anything else (other) replaces the CPUID vendor and with it the
//!   cost model that picks the kernel tiles. tract offers no override for it, so [`pin`] reads it
//!   and, only when it is present and names another vendor than CPUID does, replaces its value with
//!   the CPUID vendor (see [`pin_x86_kind`] for why that is safe in a host process).
//! - `TRACT_CONFIG` and every `TRACT_<MODEL>__<KEY>` (core `deploy`): read only when a model is
//!   prepared on the `deploy` runtime, which facekey never asks for (it plans with
//!   `into_optimized`/`into_runnable`). An override also beats the `[knobs]` such a config installs.
//!
//! Tests and benches only (never in the library facekey links): `TRACT_CPU_EXPECT_ARM32_NEON`
//! (a linalg unit test), `MM_THREADS`, `MM_DT` (linalg benches).
//!
//! Build time only (read by build scripts when tract is compiled, not by the running module):
//! `CARGO_CFG_TARGET_ARCH`, `CARGO_CFG_TARGET_ENV`, `CARGO_CFG_TARGET_OS`, `CARGO_FEATURE_*`,
//! `OUT_DIR` (tract-linalg's build.rs, which also probes the assembler for AMX and AVX-512 VNNI);
//! `PROTOC` (tract-onnx's build-proto.rs). The default executor is single-threaded, so rayon (and
//! `RAYON_NUM_THREADS`) is not used either.

use std::sync::OnceLock;

use tract_onnx::tract_core::knobs;

/// A knob pinned to a value other than its rendered default (an `Option` knob whose "unset" cannot
/// be written as an override, or one where unset means a nondeterministic probe).
const PINNED: &[(&str, &str)] = &[
    // An empty edit list: the probed instruction set, exactly as unset.
    ("TRACT_CPU_ISA", ""),
    // Skips a timing probe whose answer only chooses between two int8 tiles.
    ("TRACT_AVX512_FMA_UNITS", "1"),
    // tract's CHUNK_SLACK_OPERAND_BYTES, what unset means.
    ("TRACT_MMM_CHUNK_SLACK_BYTES", "1572864"),
];

/// Knobs left without an override, with the reason they cannot change facekey's arithmetic, and
/// whether they are read on the architecture this build targets.
pub const NOT_READ: &[(&str, &str, bool)] = &[
    (
        "TRACT_MMM_CHUNKS_PER_THREAD",
        "read only with tract-linalg's multithread-mm feature, which facekey does not enable",
        false,
    ),
    (
        "TRACT_AUTOBATCH_LANES",
        "read only by tract's deploy runtime, which facekey does not use",
        false,
    ),
    (
        "TRACT_CPU_AARCH64_KIND",
        "aarch64 CPU family",
        cfg!(target_arch = "aarch64"),
    ),
    (
        "TRACT_CPU_AARCH64_OVERRIDE_CPU_PART",
        "aarch64 CPU part",
        cfg!(target_arch = "aarch64"),
    ),
    (
        "TRACT_CPU_ARM32_NEON",
        "armv7 NEON",
        cfg!(target_arch = "arm"),
    ),
    (
        "TRACT_RISCV64_TLB_REFRESH_FMAS",
        "riscv64 TLB refresh",
        cfg!(target_arch = "riscv64"),
    ),
];

/// Why tract's knobs could not be pinned (models are then not loaded).
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PinError {
    /// A knob this version of facekey does not know how to pin: a tract upgrade added it.
    #[error(
        "tract knob {0} cannot be pinned (its default cannot be set as an override): list it in \
         core/src/tract_knobs.rs before using this version of tract"
    )]
    Unpinnable(String),
    /// A knob that cannot be pinned on this architecture is set in the environment.
    #[error(
        "the environment sets {0}, which this build cannot override and which would change how \
         models run: unset it in the environment of the program that authenticates"
    )]
    SetInEnvironment(String),
}

/// Pin every tract knob (once per process) and `TRACT_X86_KIND` (at every call: a process may
/// have set it since). Call before tract parses or plans anything.
pub fn pin() -> Result<(), PinError> {
    static KNOBS: OnceLock<Result<(), PinError>> = OnceLock::new();
    KNOBS.get_or_init(pin_knobs).clone()?;
    pin_x86_kind();
    Ok(())
}

/// The value each knob is pinned to, by name; knobs in [`NOT_READ`] are absent.
pub fn pinned_values() -> Result<Vec<(&'static str, String)>, PinError> {
    let mut values = Vec::new();
    for knob in knobs::all() {
        if NOT_READ.iter().any(|(name, _, _)| *name == knob.name) {
            continue;
        }
        let value = match PINNED.iter().find(|(name, _)| *name == knob.name) {
            Some((_, value)) => value.to_string(),
            None => (knob.default)(),
        };
        if !(knob.parses)(&value) {
            return Err(PinError::Unpinnable(knob.name.to_string()));
        }
        values.push((knob.name, value));
    }
    Ok(values)
}

fn pin_knobs() -> Result<(), PinError> {
    for (name, _, read_here) in NOT_READ {
        if *read_here && std::env::var_os(name).is_some() {
            return Err(PinError::SetInEnvironment(name.to_string()));
        }
    }
    for (name, value) in pinned_values()? {
        knobs::set_str(name, &value);
    }
    Ok(())
}

/// What tract's `x86_64::vendor` answers for a `TRACT_X86_KIND` value.
fn vendor_of_kind(kind: &str) -> &'static str {
    match kind {
        "intel" => "intel",
        "amd" => "amd",
        _ => "other",
    }
}

/// The CPU's vendor as tract names it without `TRACT_X86_KIND` (CPUID leaf 0).
#[cfg(target_arch = "x86_64")]
pub fn cpu_vendor() -> &'static str {
    let id = std::arch::x86_64::__cpuid(0);
    let mut s = [0u8; 12];
    s[0..4].copy_from_slice(&id.ebx.to_le_bytes());
    s[4..8].copy_from_slice(&id.edx.to_le_bytes());
    s[8..12].copy_from_slice(&id.ecx.to_le_bytes());
    match &s {
        b"GenuineIntel" => "intel",
        b"AuthenticAMD" => "amd",
        _ => "other",
    }
}

/// `TRACT_X86_KIND` is read by tract straight from the environment at every kernel choice, with no
/// override. When it is present and names another vendor than CPUID, its value is replaced by the
/// CPUID vendor, so tract answers as if it were unset. Why this is acceptable in a host process:
/// - nothing happens when the variable is absent or already agrees (every ordinary host);
/// - the variable already exists, so glibc's `setenv` stores one new pointer in place in
///   `environ` (the array is neither grown, moved nor shifted, and the old string is not freed):
///   a host thread reading the environment at the same moment sees the old or the new string,
///   both valid;
/// - what the host starts afterwards sees the CPU's true vendor, which is what tract computes for
///   itself when the variable is unset; no program but tract reads the name.
#[cfg(target_arch = "x86_64")]
fn pin_x86_kind() {
    const NAME: &str = "TRACT_X86_KIND";
    // tract uses `std::env::var`: a value that is not Unicode counts as unset.
    let Ok(kind) = std::env::var(NAME) else {
        return;
    };
    let truth = cpu_vendor();
    if vendor_of_kind(&kind) != truth {
        std::env::set_var(NAME, truth);
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn pin_x86_kind() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_knob_of_this_tract_is_pinned_or_never_read() {
        let values = pinned_values().expect("every knob pins");
        for knob in knobs::all() {
            let pinned = values.iter().any(|(name, _)| *name == knob.name);
            let not_read = NOT_READ.iter().any(|(name, _, _)| *name == knob.name);
            assert!(
                pinned != not_read,
                "{}: pinned {pinned}, not read {not_read}",
                knob.name
            );
        }
        // The names this module documents are tract's: a rename would leave them unpinned.
        for (name, _) in PINNED {
            assert!(knobs::all().iter().any(|k| k.name == *name), "{name}");
        }
        for (name, _, _) in NOT_READ {
            assert!(knobs::all().iter().any(|k| k.name == *name), "{name}");
        }
        let value = |n: &str| {
            values
                .iter()
                .find(|(name, _)| *name == n)
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(value("TRACT_AMX_BF16"), "false");
        assert_eq!(value("TRACT_CPU_ISA"), "");
        assert_eq!(value("TRACT_DISABLE_DIRECT_SPATIAL"), "false");
    }

    #[test]
    fn pinned_knobs_ignore_the_environment() {
        pin().unwrap();
        let all = knobs::all();
        let isa = all.iter().find(|k| k.name == "TRACT_CPU_ISA").unwrap();
        // Whatever this process's environment says, the resolved value is the pinned one.
        assert_eq!((isa.current)(), "");
        let amx = all.iter().find(|k| k.name == "TRACT_AMX_BF16").unwrap();
        assert_eq!((amx.current)(), "false");
    }

    #[test]
    fn x86_kind_values_map_as_tract_maps_them() {
        assert_eq!(vendor_of_kind("intel"), "intel");
        assert_eq!(vendor_of_kind("amd"), "amd");
        assert_eq!(vendor_of_kind("Intel"), "other");
        assert_eq!(vendor_of_kind(""), "other");
    }
}
