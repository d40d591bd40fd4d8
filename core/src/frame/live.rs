//! What a live source (a camera) says about itself: the formats it offers, what was asked of it,
//! what it set, and what happened to its frames.
//!
//! Plain data, filled in by the device side (`crate::camera`) and read through
//! [`FrameSource::camera`](super::FrameSource::camera) by whoever needs to know whether frames come
//! from a sensor (the liveness checks, the CLI). It lives here, with the frames, so that the pixel
//! side never depends on the device side: this module must never open, query or name a device.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::{fourcc_text, PixelFormat};

/// One frame size a format offers, with the fastest rate the camera gives at that size.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeOffer {
    pub width: u32,
    pub height: u32,
    /// `None` when the driver does not enumerate frame intervals.
    pub max_fps: Option<f64>,
}

/// One format a camera offers.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatOffer {
    pub fourcc: [u8; 4],
    /// The driver's description ("YUYV 4:2:2").
    pub description: String,
    pub sizes: Vec<SizeOffer>,
}

impl FormatOffer {
    /// The format, when facekey can decode it.
    pub fn format(&self) -> Option<PixelFormat> {
        PixelFormat::from_fourcc(self.fourcc)
    }
}

/// What to ask the driver for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    /// Rate to request (`None`: leave the driver's).
    pub fps: Option<u32>,
}

/// The offered formats as text, for messages: "YUYV, MJPG, NV12".
pub fn offered_text(offers: &[FormatOffer]) -> String {
    if offers.is_empty() {
        return "no capture format".to_owned();
    }
    offers
        .iter()
        .map(|o| fourcc_text(o.fourcc))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a camera is and how it was set up.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraInfo {
    /// The device as named in the source (`/dev/v4l/by-id/...` stays as given).
    pub device: PathBuf,
    pub driver: String,
    pub card: String,
    pub bus: String,
    /// Driver, card, bus and USB ids, as enrolments record them.
    pub identity: CameraIdentity,
    /// Offers only grey formats (the rule is `camera::negotiate::looks_infrared`).
    pub infrared: bool,
    pub offers: Vec<FormatOffer>,
    /// What was asked of the driver.
    pub asked: Choice,
    /// What the driver set (read back): format, size, bytes per row, bytes per image.
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub image_size: usize,
    /// Frame rate the driver reports after the request, when it reports one.
    pub fps: Option<f64>,
    /// Streaming has started (false while another program holds the camera).
    pub streaming: bool,
    /// Things that did not go as configured (an exposure the camera refused, a format the
    /// driver replaced); the camera still works.
    pub notes: Vec<String>,
    /// The stored infrared emitter setting and what became of it at open, when there is one.
    pub emitter: Option<EmitterStatus>,
    pub counters: Counters,
}

/// What a camera says it is and where it is attached; the rules that use it are in `camera::identity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraIdentity {
    /// VIDIOC_QUERYCAP `driver` ("uvcvideo").
    pub driver: String,
    /// VIDIOC_QUERYCAP `card` ("Integrated IR Camera: Integrat").
    pub card: String,
    /// VIDIOC_QUERYCAP `bus_info`: the position on the bus ("usb-0000:00:14.0-5").
    pub bus: String,
    /// USB `idVendor:idProduct` from sysfs ("04f2:b6d9"), for a USB camera.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usb: Option<String>,
}

/// The infrared emitter setting applied when the camera was opened.
#[derive(Debug, Clone, PartialEq)]
pub struct EmitterStatus {
    /// "unit 4 selector 6 = 010303000000000000".
    pub setting: String,
    /// Set, or why not (the decision goes on either way).
    pub applied: Result<(), String>,
    /// The dark-frame threshold learnt for this camera at discovery.
    pub dark_threshold: Option<f32>,
}

impl CameraInfo {
    /// "YUYV, MJPG" from the offers.
    pub fn offered_text(&self) -> String {
        offered_text(&self.offers)
    }
}

/// What happened to the frames the driver captured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames handed over.
    pub delivered: u32,
    /// Ready frames passed over because a newer one was ready too.
    pub superseded: u32,
    /// Frames dropped as older than the camera's staleness limit (`camera::STALE_AFTER`).
    pub stale: u32,
    /// Frames the driver flagged as corrupt, or empty.
    pub corrupt: u32,
    /// Frames the driver captured but lost (gaps in the sequence numbers).
    pub lost: u32,
    /// Times the camera was found busy.
    pub busy: u32,
    /// From the start of opening the camera to the first frame handed over.
    pub first_frame: Option<Duration>,
    /// From the start of opening the camera to `VIDIOC_STREAMON` done.
    pub stream_started: Option<Duration>,
}
