//! V4L2 cameras: open a capture node, choose a format, stream, hand over the newest frame.
//!
//! Opening does everything up to `VIDIOC_STREAMON` at once, so frames are being captured while the
//! caller loads its models (the decision opens the source on one thread while the models load on
//! another). From then on [`Camera::next_frame`] never blocks past its deadline: it waits with
//! `poll` and a timeout, and a camera another program holds (EBUSY) is retried until the deadline
//! and then reported as [`SourceError::Busy`]. Dropping the camera stops the stream at once.
//!
//! Frames are handed over newest first: every buffer that is ready is dequeued, older ones go
//! straight back to the driver, and a frame older than [`STALE_AFTER`] (captured before the
//! caller was ready: the buffers filled while the models loaded) is dropped for a fresh one. The
//! decision thus always looks at the present, and the driver never runs out of buffers.
//!
//! What this module must never do: block without a deadline (the node is held `O_NONBLOCK`, so
//! `VIDIOC_DQBUF` answers at once, and every wait is a `poll` or a sleep cut to the deadline),
//! trust `bytesused`, the sizes or the format the driver reports (it reads back what the driver
//! set and checks the layout against [`frame::decode::check_layout`] before mapping a buffer; a
//! frame is copied up to the bytes that layout needs, never more), leak the device into a child
//! process (close-on-exec), or panic. The raw ioctls and the buffer mappings are in `stream.rs`.
//!
//! Opening has no wait of its own: it is a fixed sequence of calls on a non-blocking node, and
//! a busy camera is not waited for there but handed back in a waiting state, so the caller's
//! deadline bounds the wait in [`Camera::next_frame`].

pub mod descriptors;
pub mod devices;
pub mod emitter;
pub mod identity;
pub mod negotiate;
// The node facekey opens and its setup ioctls; then the streaming ioctls and buffer mappings: with
// `xu`, the only unsafe code in the engine.
#[allow(unsafe_code)]
mod node;
#[allow(unsafe_code)]
mod stream;
// UVCIOC_CTRL_QUERY, on top of `node`'s ioctl: unsafe too.
#[allow(unsafe_code)]
pub mod xu;

use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use node::{Device, FrameSizes, NodeCaps};

pub use crate::frame::live::{CameraInfo, Counters, EmitterStatus};
use crate::frame::{self, Frame, FrameSource, PixelFormat, Rotation, SourceError};
pub use negotiate::{Choice, FormatOffer, SizeOffer};
use stream::MmapStream;

/// A ready frame older than this is dropped for a fresh one (see the module documentation).
pub const STALE_AFTER: Duration = Duration::from_millis(150);

/// How often a busy camera is tried again.
pub const BUSY_RETRY: Duration = Duration::from_millis(100);

/// Capture buffers asked of the driver: enough to keep streaming while one is being copied.
const BUFFERS: u32 = 4;

// V4L2 control ids and values (linux/v4l2-controls.h; bindgen skips these computed macros).
const CID_EXPOSURE_AUTO: u32 = 0x009a_0901;
const CID_EXPOSURE_ABSOLUTE: u32 = 0x009a_0902;
const EXPOSURE_MANUAL: i32 = 1;
// linux/videodev2.h device capabilities.
const CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
const CAP_VIDEO_CAPTURE_MPLANE: u32 = 0x0000_1000;
const CAP_STREAMING: u32 = 0x0400_0000;

/// How to drive a camera: the `[camera]` keys that concern the device.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Wanted frame size; `None` is [`negotiate::AUTO_SIZE`].
    pub size: Option<(u32, u32)>,
    /// Wanted rate; `None` takes the fastest the camera offers up to [`negotiate::AUTO_FPS`].
    pub fps: Option<u32>,
    /// Capture MJPG only.
    pub force_mjpeg: bool,
    /// Capture this format only (tools and tests; not a configuration key).
    pub format: Option<PixelFormat>,
    /// Manual exposure, in 100 µs units; `None` leaves automatic exposure alone.
    pub exposure: Option<u32>,
    pub rotation: Rotation,
    /// The stored infrared emitter setting for this camera ([`emitter::store`]), set right after
    /// opening, before the first frame; `Err`: the stored settings could not be read (noted, and
    /// nothing written). `None`: nothing is written to the camera's controls.
    pub emitter: Option<Result<emitter::EmitterSetting, String>>,
    /// Accept a virtual capture driver ([`identity::VIRTUAL_DRIVERS`]); `[camera] allow_virtual`.
    pub allow_virtual: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings::from_config(&facekey_config::Camera::default())
    }
}

impl Settings {
    /// The settings a `[camera]` section gives (its values are validated by the config crate).
    pub fn from_config(camera: &facekey_config::Camera) -> Settings {
        Settings {
            size: (camera.frame_width > 0 && camera.frame_height > 0)
                .then_some((camera.frame_width, camera.frame_height)),
            fps: (camera.fps > 0).then_some(camera.fps),
            force_mjpeg: camera.force_mjpeg,
            format: None,
            exposure: (camera.exposure > 0).then_some(camera.exposure),
            rotation: Rotation::from_degrees(camera.rotate).unwrap_or_default(),
            emitter: None,
            allow_virtual: camera.allow_virtual,
        }
    }
}

enum State {
    /// Another program holds the camera: try again until the deadline.
    Busy { since: Instant },
    Streaming {
        stream: MmapStream,
        last_sequence: Option<u32>,
        /// Frames dropped as stale since the last one handed over.
        stale_in_a_row: u32,
    },
}

/// A frame age no working clock produces: the driver's timestamps are not on CLOCK_MONOTONIC
/// after all, and ages mean nothing.
const IMPLAUSIBLE_AGE: Duration = Duration::from_secs(10);

/// Whether a ready frame is too old to hand over: captured more than [`STALE_AFTER`] ago, by a
/// clock that looks right, and fewer than a ring of buffers were dropped as stale just before (a
/// driver whose timestamps are off must never starve the decision).
fn is_stale(age: Option<Duration>, stale_in_a_row: u32) -> bool {
    age.is_some_and(|a| a > STALE_AFTER && a < IMPLAUSIBLE_AGE) && stale_in_a_row < BUFFERS
}

/// A V4L2 capture node, streaming (or waiting for another program to release it).
pub struct Camera {
    // Field order matters for Drop: the stream (in `state`) goes before the device closes.
    state: State,
    /// Exposure controls to put back when done, in the order they were changed.
    restore: Vec<(u32, i32)>,
    device: Device,
    settings: Settings,
    info: CameraInfo,
    /// The bytes a frame of the layout the driver set needs ([`frame::decode::check_layout`]; 0
    /// for MJPG): what is copied of each buffer at most.
    frame_bytes: usize,
    opened: Instant,
}

/// Whether an error is EBUSY: the node is streaming for another program.
fn is_busy(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error())
}

fn device_error(device: &Path, reason: impl Into<String>) -> SourceError {
    SourceError::Device {
        device: device.display().to_string(),
        reason: reason.into(),
    }
}

/// Open a node and say why not in a user's words.
pub(crate) fn open_device(path: &Path) -> Result<Device, SourceError> {
    use std::os::unix::ffi::OsStrExt;
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(device_error(path, "the device path contains a NUL byte"));
    }
    // Close-on-exec from the open itself: a program the PAM host starts (sudo's command) never
    // inherits the camera, even one forked by another thread at that moment.
    let device = Device::open(path).map_err(|e| {
        let reason = match e.kind() {
            io::ErrorKind::NotFound => {
                "no such device (is the camera plugged in? `facekey devices` lists cameras)"
                    .to_owned()
            }
            io::ErrorKind::PermissionDenied => {
                "permission denied (cameras are open to root and the video group)".to_owned()
            }
            io::ErrorKind::InvalidInput => {
                format!("not a V4L2 device: {e} (a camera is a /dev/videoN node: `facekey devices` lists them)")
            }
            _ => format!("cannot open: {e}"),
        };
        device_error(path, reason)
    })?;
    Ok(device)
}

/// The node's capabilities, checked to be a single-planar streaming capture node.
pub(crate) fn capture_caps(device: &Device, path: &Path) -> Result<NodeCaps, SourceError> {
    let caps = device.caps().map_err(|e| {
        if e.raw_os_error() == Some(rustix::io::Errno::NOTTY.raw_os_error()) {
            device_error(path, "not a V4L2 device")
        } else {
            device_error(path, format!("VIDIOC_QUERYCAP failed: {e}"))
        }
    })?;
    if caps.caps & CAP_VIDEO_CAPTURE == 0 {
        let what = if caps.caps & CAP_VIDEO_CAPTURE_MPLANE != 0 {
            "a multi-planar capture node, which facekey does not support"
        } else {
            "not a video capture node (a UVC camera's second node carries metadata: try the other one)"
        };
        return Err(device_error(
            path,
            format!("{what} (driver {}, {})", caps.driver, caps.card),
        ));
    }
    if caps.caps & CAP_STREAMING == 0 {
        return Err(device_error(
            path,
            "the driver does not support streaming I/O",
        ));
    }
    Ok(caps)
}

/// Every capture format of the node with its sizes and top rate at each size. `wanted` picks the
/// size reported for drivers that describe sizes as ranges.
pub fn enumerate(device: &Device, wanted: (u32, u32)) -> Vec<FormatOffer> {
    device
        .formats()
        .into_iter()
        .map(|desc| {
            let code = desc.fourcc;
            let mut sizes = Vec::new();
            for size in device.frame_sizes(code) {
                let points = match size {
                    FrameSizes::Discrete { width, height } => vec![(width, height)],
                    FrameSizes::Range { min, max, step } => {
                        let snap = |v: u32, min: u32, max: u32, step: u32| {
                            let step = step.max(1);
                            let v = v.clamp(min, max.max(min));
                            min + (v - min) / step * step
                        };
                        let mut points = vec![
                            (
                                snap(wanted.0, min.0, max.0, step.0),
                                snap(wanted.1, min.1, max.1, step.1),
                            ),
                            min,
                            max,
                        ];
                        points.dedup();
                        points
                    }
                };
                for (width, height) in points {
                    sizes.push(SizeOffer {
                        width,
                        height,
                        max_fps: top_rate(device, code, width, height),
                    });
                }
            }
            FormatOffer {
                fourcc: code,
                description: desc.description,
                sizes,
            }
        })
        .collect()
}

/// The fastest rate a format offers at a size.
fn top_rate(device: &Device, code: [u8; 4], width: u32, height: u32) -> Option<f64> {
    device
        .intervals(code, width, height)
        .into_iter()
        .filter_map(|i| i.top_rate())
        .reduce(f64::max)
}

/// Why a start attempt failed.
enum StartError {
    Busy,
    Failed(SourceError),
}

impl Camera {
    /// Open `path`, choose the format and start streaming. A camera another program is using
    /// comes back in a waiting state: [`Camera::next_frame`] retries it until its deadline.
    pub fn open(path: &Path, settings: &Settings) -> Result<Camera, SourceError> {
        let opened = Instant::now();
        let device = open_device(path)?;
        let caps = capture_caps(&device, path)?;
        // Before anything is written to the device: a loopback node's frames are whatever its writer chose.
        if let Some(driver) = identity::virtual_driver(&caps.driver) {
            if !settings.allow_virtual {
                return Err(device_error(
                    path,
                    format!(
                        "driver {driver:?} is a virtual capture device (its frames come from a program, not a \
                         sensor); facekey refuses it unless [camera] allow_virtual = true, which is for tests only"
                    ),
                ));
            }
        }
        let identity = identity::CameraIdentity::of_node(path, &caps.driver, &caps.card, &caps.bus);
        // Before the format is set and the stream starts: the first frame is already lit. A
        // failed write is noted, never fatal: the frames say whether the emitter is on.
        let emitter = settings.emitter.as_ref().map(|stored| match stored {
            Ok(setting) => EmitterStatus {
                setting: setting.to_string(),
                applied: emitter::apply(device.fd(), setting).map_err(|e| e.to_string()),
                dark_threshold: setting.dark_threshold,
            },
            Err(e) => EmitterStatus {
                setting: "unknown".into(),
                applied: Err(e.clone()),
                dark_threshold: None,
            },
        });
        let offers = enumerate(&device, settings.size.unwrap_or(negotiate::AUTO_SIZE));
        let choice = negotiate::choose(&offers, settings).map_err(|e| match e {
            negotiate::NoChoice::NotOffered { wanted, offered } => SourceError::NotOffered {
                device: path.display().to_string(),
                wanted,
                offered,
            },
            negotiate::NoChoice::NothingDecodable { offered } => device_error(
                path,
                format!("offers no format facekey can decode (it offers {offered})"),
            ),
        })?;
        let info = CameraInfo {
            device: path.to_path_buf(),
            driver: caps.driver,
            card: caps.card,
            bus: caps.bus,
            identity,
            infrared: negotiate::looks_infrared(&offers),
            offers,
            asked: choice,
            format: choice.format,
            width: choice.width,
            height: choice.height,
            stride: choice.format.min_stride(choice.width),
            image_size: 0,
            fps: None,
            streaming: false,
            notes: emitter
                .iter()
                .filter_map(|e| e.applied.as_ref().err())
                .map(|e| format!("infrared emitter not set: {e}"))
                .collect(),
            emitter,
            counters: Counters::default(),
        };
        let mut camera = Camera {
            state: State::Busy { since: opened },
            restore: Vec::new(),
            device,
            settings: settings.clone(),
            info,
            frame_bytes: 0,
            opened,
        };
        match camera.start() {
            Ok(()) => {}
            Err(StartError::Busy) => camera.info.counters.busy += 1,
            Err(StartError::Failed(e)) => return Err(e),
        }
        Ok(camera)
    }

    /// What the camera is and how it was set up.
    pub fn info(&self) -> &CameraInfo {
        &self.info
    }

    /// The open node, for extension-unit queries ([`xu`]) while streaming.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.device.fd()
    }

    /// Set the format, rate and exposure, then map the buffers and start streaming.
    fn start(&mut self) -> Result<(), StartError> {
        let path = self.info.device.clone();
        let fail = |reason: String| StartError::Failed(device_error(&path, reason));
        let choice = self.info.asked;
        let set = match self
            .device
            .set_format(choice.format.fourcc(), choice.width, choice.height)
        {
            Ok(set) => set,
            Err(e) if is_busy(&e) => return Err(StartError::Busy),
            Err(e) => {
                return Err(fail(format!(
                    "cannot set {} {}x{}: {e}",
                    choice.format, choice.width, choice.height
                )))
            }
        };
        // What the driver set is what its frames hold, whatever was asked: vivid answers YUYV
        // to a request for MJPG.
        let Some(format) = PixelFormat::from_fourcc(set.fourcc) else {
            return Err(fail(format!(
                "asked for {}, the driver set {}, which facekey cannot decode",
                choice.format,
                frame::fourcc_text(set.fourcc)
            )));
        };
        let mut notes = Vec::new();
        if format != choice.format {
            notes.push(format!(
                "asked for {}, the driver set {format}",
                choice.format
            ));
        }
        if (set.width, set.height) != (choice.width, choice.height) {
            notes.push(format!(
                "asked for {}x{}, the driver set {}x{}",
                choice.width, choice.height, set.width, set.height
            ));
        }
        let min = format.min_stride(set.width);
        let stride = (set.stride as usize).max(min);
        if format != PixelFormat::Mjpeg && (set.stride as usize) < min {
            notes.push(format!(
                "the driver reported {} bytes per row, fewer than a row holds ({min})",
                set.stride
            ));
        }
        // Before any buffer is mapped or any frame copied: a layout too large (or absurd) to
        // decode is refused here with its sizes, not met in every frame.
        let frame_bytes = frame::decode::check_layout(format, set.width, set.height, stride)
            .map_err(|e| fail(format!("the driver set a frame facekey refuses: {e}")))?;
        if let Some(fps) = choice.fps {
            if let Err(e) = self.device.set_rate(fps) {
                notes.push(format!("cannot set {fps} frames per second: {e}"));
            }
        }
        let fps = self.device.rate();
        if let Some(exposure) = self.settings.exposure {
            if self.restore.is_empty() {
                self.set_exposure(exposure, &mut notes);
            }
        }
        let stream = match MmapStream::start(self.device.fd(), BUFFERS) {
            Ok(stream) => stream,
            Err(e) if is_busy(&e) => return Err(StartError::Busy),
            Err(e) => return Err(fail(format!("cannot start streaming: {e}"))),
        };
        self.state = State::Streaming {
            stream,
            last_sequence: None,
            stale_in_a_row: 0,
        };
        let info = &mut self.info;
        info.format = format;
        info.width = set.width;
        info.height = set.height;
        info.stride = stride;
        info.image_size = set.size as usize;
        info.fps = fps;
        info.streaming = true;
        info.notes.extend(notes);
        self.frame_bytes = frame_bytes;
        info.counters.stream_started = Some(self.opened.elapsed());
        Ok(())
    }

    /// Manual exposure; the previous values are kept to be restored on drop, so another program
    /// does not inherit facekey's setting.
    fn set_exposure(&mut self, value: u32, notes: &mut Vec<String>) {
        for (id, target) in [
            (CID_EXPOSURE_AUTO, EXPOSURE_MANUAL),
            (
                CID_EXPOSURE_ABSOLUTE,
                i32::try_from(value).unwrap_or(i32::MAX),
            ),
        ] {
            let before = match self.device.control(id) {
                Ok(v) => v,
                Err(e) => {
                    notes.push(format!(
                        "exposure not set: the camera has no control {id:#x} ({e})"
                    ));
                    return;
                }
            };
            if let Err(e) = self.device.set_control(id, target) {
                notes.push(format!("exposure not set: control {id:#x} = {target}: {e}"));
                return;
            }
            self.restore.push((id, before));
        }
    }

    /// A frame from a dequeued buffer, or `None` when it is corrupt or stale (given back).
    fn take(&mut self, now: Instant) -> Result<Option<Frame>, SourceError> {
        let path = self.info.device.clone();
        let State::Streaming {
            stream,
            last_sequence,
            stale_in_a_row,
        } = &mut self.state
        else {
            return Ok(None);
        };
        let io_error = |e: io::Error| capture_error(&path, e);
        // Drain: keep the newest ready frame, give the older ones straight back. At most a ring's
        // worth: a driver that hands a buffer back as fast as it is queued cannot keep this loop
        // (and the caller's deadline) waiting.
        let mut newest: Option<stream::Dequeued> = None;
        let mut superseded = 0;
        for _ in 0..stream.buffer_count() {
            let Some(d) = stream.dequeue().map_err(io_error)? else {
                break;
            };
            if let Some(older) = newest.replace(d) {
                stream.queue(older.index).map_err(io_error)?;
                superseded += 1;
            }
        }
        let Some(d) = newest else {
            return Ok(None);
        };
        self.info.counters.superseded += superseded;
        if let Some(last) = *last_sequence {
            // Superseded frames are not lost: the driver delivered them.
            let gap = d.sequence.wrapping_sub(last).saturating_sub(1);
            self.info.counters.lost += gap.saturating_sub(superseded);
        }
        *last_sequence = Some(d.sequence);
        let age = d
            .monotonic
            .map(|captured| stream::monotonic_now().saturating_sub(captured));
        if d.error || d.bytesused == 0 {
            self.info.counters.corrupt += 1;
            stream.queue(d.index).map_err(io_error)?;
            return Ok(None);
        }
        if is_stale(age, *stale_in_a_row) {
            *stale_in_a_row += 1;
            self.info.counters.stale += 1;
            stream.queue(d.index).map_err(io_error)?;
            return Ok(None);
        }
        *stale_in_a_row = 0;
        // Never more than the layout needs (raw formats), nor than any frame may hold (MJPG): the
        // buffer's length and `bytesused` are the driver's word.
        let limit = match self.frame_bytes {
            0 => frame::decode::MAX_FRAME_BYTES,
            needed => needed,
        };
        let bytes = stream.data(&d);
        let data = bytes[..bytes.len().min(limit)].to_vec();
        stream.queue(d.index).map_err(io_error)?;
        let info = &mut self.info;
        info.counters.delivered += 1;
        info.counters
            .first_frame
            .get_or_insert_with(|| self.opened.elapsed());
        Ok(Some(Frame {
            width: info.width,
            height: info.height,
            stride: info.stride,
            format: info.format,
            data,
            rotation: self.settings.rotation,
            timestamp: age.and_then(|a| now.checked_sub(a)).unwrap_or(now),
            origin: info.device.display().to_string(),
        }))
    }
}

fn capture_error(path: &Path, e: io::Error) -> SourceError {
    let reason = if e.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error()) {
        "the camera was disconnected".to_owned()
    } else {
        format!("capture failed: {e}")
    };
    device_error(path, reason)
}

impl FrameSource for Camera {
    fn next_frame(&mut self, deadline: Instant) -> Result<Option<Frame>, SourceError> {
        loop {
            let now = Instant::now();
            match &self.state {
                State::Busy { since } => {
                    let since = *since;
                    match self.start() {
                        Ok(()) => continue,
                        Err(StartError::Failed(e)) => return Err(e),
                        Err(StartError::Busy) => self.info.counters.busy += 1,
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(SourceError::Busy {
                            device: self.info.device.display().to_string(),
                            waited: since.elapsed(),
                        });
                    }
                    std::thread::sleep(left.min(BUSY_RETRY));
                }
                State::Streaming { .. } => {
                    if let Some(frame) = self.take(now)? {
                        return Ok(Some(frame));
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    if let State::Streaming { stream, .. } = &self.state {
                        let ready = stream
                            .wait(left)
                            .map_err(|e| capture_error(&self.info.device, e))?;
                        if !ready {
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    fn describe(&self) -> String {
        let i = &self.info;
        let rate = i.fps.map(|f| format!(" at {f:.0} fps")).unwrap_or_default();
        let state = if i.streaming { "" } else { ", busy" };
        format!(
            "v4l2:{} ({}, {}, {} {}x{}{rate}{}{state})",
            i.device.display(),
            i.card,
            i.driver,
            i.format,
            i.width,
            i.height,
            if i.infrared { ", infrared" } else { "" },
        )
    }

    fn camera(&self) -> Option<&CameraInfo> {
        Some(&self.info)
    }

    /// The size of the decoded frames: after rotation.
    fn frame_size_hint(&self) -> Option<(u32, u32)> {
        let (w, h) = (self.info.width, self.info.height);
        Some(match self.settings.rotation {
            Rotation::Cw90 | Rotation::Cw270 => (h, w),
            Rotation::None | Rotation::Cw180 => (w, h),
        })
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        // Stop the stream first (dropping the MmapStream), then put the exposure back.
        self.state = State::Busy {
            since: Instant::now(),
        };
        for (id, value) in self.restore.drain(..).rev() {
            let _ = self.device.set_control(id, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_older_than_150_ms_are_stale_unless_the_clock_is_off_or_too_many_were_dropped() {
        let ms = Duration::from_millis;
        assert!(!is_stale(None, 0));
        assert!(!is_stale(Some(ms(40)), 0));
        assert!(!is_stale(Some(STALE_AFTER), 0));
        assert!(is_stale(Some(ms(151)), 0));
        assert!(is_stale(Some(ms(900)), BUFFERS - 1));
        // A whole ring dropped already: hand the next one over whatever its age.
        assert!(!is_stale(Some(ms(900)), BUFFERS));
        // Ten seconds old: the timestamps are not on the monotonic clock.
        assert!(!is_stale(Some(Duration::from_secs(3600)), 0));
    }

    #[test]
    fn settings_from_the_default_config_are_automatic() {
        let s = Settings::default();
        assert_eq!(
            (s.size, s.fps, s.exposure, s.format),
            (None, None, None, None)
        );
        assert!(!s.force_mjpeg);
        assert_eq!(s.rotation, Rotation::None);
        let c = facekey_config::Camera {
            frame_width: 1280,
            frame_height: 720,
            fps: 15,
            exposure: 250,
            rotate: 270,
            force_mjpeg: true,
            ..facekey_config::Camera::default()
        };
        let s = Settings::from_config(&c);
        assert_eq!(s.size, Some((1280, 720)));
        assert_eq!((s.fps, s.exposure), (Some(15), Some(250)));
        assert_eq!(s.rotation, Rotation::Cw270);
        assert!(s.force_mjpeg);
    }
}
