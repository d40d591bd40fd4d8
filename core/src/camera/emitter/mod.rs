//! The infrared emitter: the extension-unit setting that lights it, where it is kept, and how it
//! is applied each time the camera is opened.
//!
//! Many "Windows Hello" cameras keep their emitter dark under Linux until a maker-specific
//! extension-unit control is set, and forget the setting on suspend and power cycles. facekey
//! finds the control once ([`discover`], `facekey ir discover`), keeps it root-owned in
//! `/etc/facekey/ir.toml` ([`store`]) and sets it each time it opens that camera, right after
//! opening and before the first frame ([`super::Camera::open`]), while the process is still
//! privileged and before any confinement.
//!
//! What this module must never do: write a control that is not in the trusted settings file (or,
//! during discovery, one the camera declares); let a failed write fail a decision (it is noted
//! and logged, and the decision goes on: the frames will say whether the emitter is lit); or run
//! in the confined part (seccomp refuses UVCIOC_CTRL_QUERY there).

pub mod discover;
pub mod store;

use std::fmt;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use super::descriptors::hex;
use super::xu::{self, ControlId};
use crate::liveness::Exposure;

/// A control and the value that lights a camera's emitter.
#[derive(Debug, Clone, PartialEq)]
pub struct EmitterSetting {
    pub control: ControlId,
    pub value: Vec<u8>,
    /// A dark-frame threshold (percent) learnt at discovery from this camera's own lit and unlit
    /// frames; `camera.dark_threshold` wins when the configuration sets it ([`dark_threshold`]).
    pub dark_threshold: Option<f32>,
}

impl fmt::Display for EmitterSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}", self.control, hex(&self.value))
    }
}

/// The decision's dark-frame threshold, in percent: the configuration's `camera.dark_threshold`
/// when it sets one, else the one learnt for this camera at discovery, else
/// [`facekey_config::DEFAULT_DARK_THRESHOLD`]. The one place that chooses.
pub fn dark_threshold(configured: Option<f32>, learnt: Option<f32>) -> f32 {
    configured
        .or(learnt.filter(|t| *t > 0.0 && *t <= 100.0))
        .unwrap_or(facekey_config::DEFAULT_DARK_THRESHOLD)
}

/// [`dark_threshold`] for a source: the threshold learnt for the camera comes with its
/// information (it was stored with the emitter setting applied at open).
pub fn dark_threshold_for(configured: Option<f32>, camera: Option<&super::CameraInfo>) -> f32 {
    dark_threshold(
        configured,
        camera
            .and_then(|c| c.emitter.as_ref())
            .and_then(|e| e.dark_threshold),
    )
}

/// Set the stored value on an open capture node. The error says which control and why.
pub fn apply(fd: BorrowedFd<'_>, setting: &EmitterSetting) -> Result<(), xu::XuError> {
    xu::set(fd, setting.control, &setting.value)
}

/// Check a setting against the camera at `node` and set it now (`facekey ir set`): the control
/// must be one the camera can read and write (GET_INFO), and the value exactly GET_LEN bytes.
/// The error names the device and what is wrong.
pub fn check_and_apply(node: &std::path::Path, setting: &EmitterSetting) -> Result<(), String> {
    let device = super::open_device(node).map_err(|e| e.to_string())?;
    super::capture_caps(&device, node).map_err(|e| e.to_string())?;
    let fd = device.fd();
    let at = |e: xu::XuError| format!("{}: {e}", node.display());
    let info = xu::info(fd, setting.control).map_err(at)?;
    if info & xu::INFO_SET == 0 {
        return Err(format!(
            "{}: {} cannot be written (GET_INFO {info:#04x})",
            node.display(),
            setting.control
        ));
    }
    let len = xu::len(fd, setting.control).map_err(at)?;
    if usize::from(len) != setting.value.len() {
        return Err(format!(
            "{}: {} is {len} bytes long (GET_LEN), the value given has {}",
            node.display(),
            setting.control,
            setting.value.len()
        ));
    }
    apply(fd, setting).map_err(at)
}

/// Discovery on a real camera: extension-unit queries on the streaming camera's own node, and
/// bursts of its newest frames.
pub struct LiveCamera {
    camera: super::Camera,
    started: Instant,
    /// Frames read and dropped after each change, so a burst shows the camera after it.
    settle: Duration,
    /// The longest wait for one frame.
    frame_wait: Duration,
}

impl LiveCamera {
    /// `camera` must have been opened without an emitter setting ([`super::Settings::emitter`]
    /// `None`): discovery judges the camera as it is.
    pub fn new(camera: super::Camera) -> LiveCamera {
        LiveCamera {
            camera,
            started: Instant::now(),
            settle: Duration::from_millis(300),
            frame_wait: Duration::from_secs(2),
        }
    }

    pub fn info(&self) -> &super::CameraInfo {
        self.camera.info()
    }
}

impl discover::EmitterDevice for LiveCamera {
    fn query(
        &mut self,
        control: ControlId,
        request: xu::Request,
        data: &mut [u8],
    ) -> Result<(), xu::XuError> {
        xu::query(self.camera.fd(), control, request, data)
    }

    fn burst(&mut self, frames: usize) -> Result<Vec<Exposure>, String> {
        use crate::frame::FrameSource;
        let settle_until = Instant::now() + self.settle;
        while Instant::now() < settle_until {
            if self
                .camera
                .next_frame(settle_until)
                .map_err(|e| e.to_string())?
                .is_none()
            {
                break;
            }
        }
        let mut out = Vec::with_capacity(frames);
        while out.len() < frames {
            let Some(frame) = self
                .camera
                .next_frame(Instant::now() + self.frame_wait)
                .map_err(|e| e.to_string())?
            else {
                break;
            };
            if let Ok(image) = frame.to_rgb() {
                out.push(crate::liveness::measure(&image));
            }
        }
        Ok(out)
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A camera whose emitter control is known in advance: tried first by discovery (and, like any
/// other candidate, kept only when the frames show it lights the emitter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownCamera {
    pub vendor: u16,
    pub product: u16,
    pub unit: u8,
    pub selector: u8,
    pub value: &'static [u8],
    /// Where the entry comes from.
    pub source: &'static str,
}

/// Cameras whose emitter control has been published. Entries are only ever tried first; the
/// frames decide.
pub const KNOWN_CAMERAS: &[KnownCamera] = &[KnownCamera {
    vendor: 0x04f2,
    product: 0xb6d9,
    unit: 14,
    selector: 6,
    value: &[1, 3, 3, 0, 0, 0, 0, 0, 0],
    source:
        "Chicony integrated IR camera; the setting users of linux-enable-ir-emitter report for it",
}];

/// The known settings for a USB vendor:product, as discovery's first candidates.
pub fn known_settings(vendor: u16, product: u16) -> Vec<(ControlId, Vec<u8>)> {
    KNOWN_CAMERAS
        .iter()
        .filter(|k| k.vendor == vendor && k.product == product)
        .map(|k| {
            (
                ControlId {
                    unit: k.unit,
                    selector: k.selector,
                },
                k.value.to_vec(),
            )
        })
        .collect()
}

/// "04f2:b6d9" to (0x04f2, 0xb6d9).
pub fn parse_usb_id(text: &str) -> Option<(u16, u16)> {
    let (v, p) = text.split_once(':')?;
    Some((
        u16::from_str_radix(v, 16).ok()?,
        u16::from_str_radix(p, 16).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_threshold_wins_then_learnt_then_default() {
        assert_eq!(dark_threshold(Some(70.0), Some(40.0)), 70.0);
        assert_eq!(dark_threshold(None, Some(40.0)), 40.0);
        assert_eq!(
            dark_threshold(None, None),
            facekey_config::DEFAULT_DARK_THRESHOLD
        );
        // A learnt value out of range (a tampered file is refused by trust, but still) is ignored.
        assert_eq!(
            dark_threshold(None, Some(0.0)),
            facekey_config::DEFAULT_DARK_THRESHOLD
        );
        assert_eq!(
            dark_threshold(None, Some(f32::NAN)),
            facekey_config::DEFAULT_DARK_THRESHOLD
        );
    }

    #[test]
    fn known_cameras_are_found_by_usb_id() {
        let (v, p) = parse_usb_id("04f2:b6d9").unwrap();
        let known = known_settings(v, p);
        assert_eq!(known.len(), 1);
        assert_eq!(
            known[0].0,
            ControlId {
                unit: 14,
                selector: 6
            }
        );
        assert!(known_settings(0x1d6b, 0x0102).is_empty());
        assert_eq!(parse_usb_id("1d6b"), None);
        assert_eq!(parse_usb_id("zz:01"), None);
    }
}
