//! The FFI edge of camera setup: the V4L2 node facekey opens itself, and the ioctls that describe and
//! configure it (capabilities, formats, frame sizes and rates, the capture format and rate, controls).
//!
//! Why not `v4l::Device`: it opens the node without `O_CLOEXEC` (setting the flag afterwards leaves a
//! moment in which another thread of the PAM host can fork and exec with the camera open), its `Drop`
//! panics when `close` fails, its format conversion panics on a colour space or field order newer than
//! the crate, and its enumerations have no bound. Here the node is opened in one `open(2)` with
//! `O_RDWR | O_NONBLOCK | O_CLOEXEC`, checked to be a character device on the opened descriptor, closed
//! by `OwnedFd` (which never panics), and every enumeration stops at a fixed count. Only the plain
//! structs come from `v4l` (bindgen's layouts of linux/videodev2.h).
//!
//! What this file must never do: block (the node is non-blocking; none of these ioctls waits for a
//! frame), trust a length or string the driver fills in (names are cut at the first NUL within their
//! array, counts are bounded), or panic.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use v4l::v4l2;
use v4l::v4l2::vidioc;
use v4l::v4l_sys::{
    v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE as BUF_TYPE_VIDEO_CAPTURE, v4l2_buffer,
    v4l2_capability, v4l2_control, v4l2_fmtdesc, v4l2_format, v4l2_fract, v4l2_frmivalenum,
    v4l2_frmivaltypes_V4L2_FRMIVAL_TYPE_DISCRETE as FRMIVAL_DISCRETE, v4l2_frmsizeenum,
    v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_DISCRETE as FRMSIZE_DISCRETE, v4l2_requestbuffers,
    v4l2_streamparm, V4L2_CAP_DEVICE_CAPS, V4L2_CAP_TIMEPERFRAME,
};

/// The most formats, sizes per format and rates per size read from a node: far more than any camera
/// offers, and a bound on the time a driver that never ends an enumeration can take.
pub const MAX_FORMATS: u32 = 64;
pub const MAX_SIZES: u32 = 256;
pub const MAX_INTERVALS: u32 = 64;

/// Call one V4L2 ioctl whose argument is a plain-old-data struct, retrying when a signal
/// interrupts it.
///
/// # Safety
/// `request` must be an ioctl whose argument type is exactly `T` (the `vidioc` constants encode
/// it), so the kernel reads and writes only within `*arg`.
pub(super) unsafe fn ioctl<T>(
    fd: RawFd,
    request: vidioc::_IOC_TYPE,
    arg: &mut T,
) -> io::Result<()> {
    loop {
        // SAFETY: `arg` is a valid, exclusive reference to a `T`, which the caller promises is
        // the argument type of `request`; the kernel does not keep the pointer after returning.
        let result = unsafe { v4l2::ioctl(fd, request, arg as *mut T as *mut std::ffi::c_void) };
        match result {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A V4L2 struct with every byte zero: how the API expects them before the caller fills fields.
pub(super) fn zeroed<T: Zeroable>() -> T {
    // SAFETY: `Zeroable` is only implemented below for bindgen structs of integers, arrays of
    // integers and unions of those, for which all-zero bytes are a valid value.
    unsafe { mem::zeroed() }
}

/// Marker for the V4L2 structs that may be zero-initialised.
pub(super) trait Zeroable {}
impl Zeroable for v4l2_capability {}
impl Zeroable for v4l2_buffer {}
impl Zeroable for v4l2_requestbuffers {}
impl Zeroable for v4l2_fmtdesc {}
impl Zeroable for v4l2_frmsizeenum {}
impl Zeroable for v4l2_frmivalenum {}
impl Zeroable for v4l2_format {}
impl Zeroable for v4l2_streamparm {}
impl Zeroable for v4l2_control {}

/// A driver's fixed-size name field as text: up to the first NUL, never past the array.
fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// What `VIDIOC_QUERYCAP` says about this node (not the whole physical device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCaps {
    pub driver: String,
    pub card: String,
    pub bus: String,
    /// `device_caps` when the driver reports it, else `capabilities`: the capabilities of the whole
    /// physical device, which a UVC camera's metadata node shares with its capture node, cannot tell
    /// the two apart.
    pub caps: u32,
}

/// A capture format the node lists (`VIDIOC_ENUM_FMT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatDesc {
    pub fourcc: [u8; 4],
    pub description: String,
}

/// The frame sizes of a format (`VIDIOC_ENUM_FRAMESIZES`): one size, or a range (continuous is a
/// range with steps of 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameSizes {
    Discrete {
        width: u32,
        height: u32,
    },
    Range {
        min: (u32, u32),
        max: (u32, u32),
        step: (u32, u32),
    },
}

/// A frame interval in seconds, as the driver gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    pub numerator: u32,
    pub denominator: u32,
}

impl Fraction {
    /// Frames per second for this interval; `None` for a zero interval.
    pub fn rate(self) -> Option<f64> {
        (self.numerator > 0).then(|| f64::from(self.denominator) / f64::from(self.numerator))
    }
}

impl From<v4l2_fract> for Fraction {
    fn from(f: v4l2_fract) -> Fraction {
        Fraction {
            numerator: f.numerator,
            denominator: f.denominator,
        }
    }
}

/// The frame intervals of a format at a size (`VIDIOC_ENUM_FRAMEINTERVALS`): one, or a range whose
/// shortest interval is `min`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intervals {
    Discrete(Fraction),
    Range { min: Fraction, max: Fraction },
}

impl Intervals {
    /// The fastest rate this entry allows.
    pub fn top_rate(self) -> Option<f64> {
        match self {
            Intervals::Discrete(f) | Intervals::Range { min: f, .. } => f.rate(),
        }
    }
}

/// The capture format the driver set (`VIDIOC_S_FMT`, as it answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixFormat {
    pub fourcc: [u8; 4],
    pub width: u32,
    pub height: u32,
    /// Bytes per row, as the driver reports it (checked by the caller).
    pub stride: u32,
    /// Bytes of one frame, as the driver reports it.
    pub size: u32,
}

/// An open V4L2 node. Closing is `OwnedFd`'s: once, when the value drops, never panicking.
#[derive(Debug)]
pub struct Device {
    fd: OwnedFd,
}

impl Device {
    /// Open `path` (a symbolic link such as /dev/v4l/by-id/... is followed) for capture:
    /// read-write, non-blocking, close-on-exec from the first instant, and only if it is a character
    /// device. A path with a NUL byte is an error, not a panic.
    pub fn open(path: &Path) -> io::Result<Device> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )?;
        let stat = rustix::fs::fstat(&fd)?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode)
            != rustix::fs::FileType::CharacterDevice
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a character device",
            ));
        }
        Ok(Device { fd })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// `VIDIOC_QUERYCAP`.
    pub fn caps(&self) -> io::Result<NodeCaps> {
        let mut caps: v4l2_capability = zeroed();
        // SAFETY: VIDIOC_QUERYCAP takes a `struct v4l2_capability`.
        unsafe { ioctl(self.raw(), vidioc::VIDIOC_QUERYCAP, &mut caps)? };
        let node_caps = if caps.capabilities & V4L2_CAP_DEVICE_CAPS != 0 {
            caps.device_caps
        } else {
            caps.capabilities
        };
        Ok(NodeCaps {
            driver: text(&caps.driver),
            card: text(&caps.card),
            bus: text(&caps.bus_info),
            caps: node_caps,
        })
    }

    /// The capture formats, up to [`MAX_FORMATS`]. The first failure ends the list (EINVAL past the
    /// last one is how V4L2 says "no more").
    pub fn formats(&self) -> Vec<FormatDesc> {
        let mut out = Vec::new();
        for index in 0..MAX_FORMATS {
            let mut desc: v4l2_fmtdesc = zeroed();
            desc.index = index;
            desc.type_ = BUF_TYPE_VIDEO_CAPTURE;
            // SAFETY: VIDIOC_ENUM_FMT takes a `struct v4l2_fmtdesc`.
            if unsafe { ioctl(self.raw(), vidioc::VIDIOC_ENUM_FMT, &mut desc) }.is_err() {
                break;
            }
            out.push(FormatDesc {
                fourcc: desc.pixelformat.to_le_bytes(),
                description: text(&desc.description),
            });
        }
        out
    }

    /// The frame sizes of a format, up to [`MAX_SIZES`]; an entry of a type V4L2 does not define is
    /// skipped.
    pub fn frame_sizes(&self, fourcc: [u8; 4]) -> Vec<FrameSizes> {
        let mut out = Vec::new();
        for index in 0..MAX_SIZES {
            let mut size: v4l2_frmsizeenum = zeroed();
            size.index = index;
            size.pixel_format = u32::from_le_bytes(fourcc);
            // SAFETY: VIDIOC_ENUM_FRAMESIZES takes a `struct v4l2_frmsizeenum`.
            if unsafe { ioctl(self.raw(), vidioc::VIDIOC_ENUM_FRAMESIZES, &mut size) }.is_err() {
                break;
            }
            out.push(if size.type_ == FRMSIZE_DISCRETE {
                // SAFETY: for V4L2_FRMSIZE_TYPE_DISCRETE the driver filled `discrete`; both union
                // members are plain integers, so any bytes are a valid value anyway.
                let d = unsafe { size.__bindgen_anon_1.discrete };
                FrameSizes::Discrete {
                    width: d.width,
                    height: d.height,
                }
            } else {
                // SAFETY: for the continuous and stepwise types the driver filled `stepwise`; any
                // bytes are a valid value of this all-integer struct.
                let s = unsafe { size.__bindgen_anon_1.stepwise };
                FrameSizes::Range {
                    min: (s.min_width, s.min_height),
                    max: (s.max_width, s.max_height),
                    step: (s.step_width, s.step_height),
                }
            });
        }
        out
    }

    /// The frame intervals of a format at a size, up to [`MAX_INTERVALS`].
    pub fn intervals(&self, fourcc: [u8; 4], width: u32, height: u32) -> Vec<Intervals> {
        let mut out = Vec::new();
        for index in 0..MAX_INTERVALS {
            let mut ival: v4l2_frmivalenum = zeroed();
            ival.index = index;
            ival.pixel_format = u32::from_le_bytes(fourcc);
            ival.width = width;
            ival.height = height;
            // SAFETY: VIDIOC_ENUM_FRAMEINTERVALS takes a `struct v4l2_frmivalenum`.
            if unsafe { ioctl(self.raw(), vidioc::VIDIOC_ENUM_FRAMEINTERVALS, &mut ival) }.is_err()
            {
                break;
            }
            out.push(if ival.type_ == FRMIVAL_DISCRETE {
                // SAFETY: for V4L2_FRMIVAL_TYPE_DISCRETE the driver filled `discrete`; both union
                // members are plain integers.
                Intervals::Discrete(unsafe { ival.__bindgen_anon_1.discrete }.into())
            } else {
                // SAFETY: for the continuous and stepwise types the driver filled `stepwise`.
                let s = unsafe { ival.__bindgen_anon_1.stepwise };
                Intervals::Range {
                    min: s.min.into(),
                    max: s.max.into(),
                }
            });
        }
        out
    }

    /// Ask for a capture format (`VIDIOC_S_FMT`, progressive or any field order) and return what the
    /// driver set, which may differ in every field.
    pub fn set_format(&self, fourcc: [u8; 4], width: u32, height: u32) -> io::Result<PixFormat> {
        let mut format: v4l2_format = zeroed();
        format.type_ = BUF_TYPE_VIDEO_CAPTURE;
        // The `pix` member is the one VIDIOC_S_FMT reads for a single-planar capture type.
        format.fmt.pix.width = width;
        format.fmt.pix.height = height;
        format.fmt.pix.pixelformat = u32::from_le_bytes(fourcc);
        // SAFETY: VIDIOC_S_FMT takes a `struct v4l2_format`.
        unsafe { ioctl(self.raw(), vidioc::VIDIOC_S_FMT, &mut format)? };
        // SAFETY: for a capture type the driver answers in `pix`; all of its fields are integers.
        let pix = unsafe { format.fmt.pix };
        Ok(PixFormat {
            fourcc: pix.pixelformat.to_le_bytes(),
            width: pix.width,
            height: pix.height,
            stride: pix.bytesperline,
            size: pix.sizeimage,
        })
    }

    /// `VIDIOC_G_PARM` for capture.
    fn params(&self) -> io::Result<v4l2_streamparm> {
        let mut parm: v4l2_streamparm = zeroed();
        parm.type_ = BUF_TYPE_VIDEO_CAPTURE;
        // SAFETY: VIDIOC_G_PARM takes a `struct v4l2_streamparm`.
        unsafe { ioctl(self.raw(), vidioc::VIDIOC_G_PARM, &mut parm)? };
        Ok(parm)
    }

    /// Ask for `fps` frames per second (`VIDIOC_S_PARM`); the driver picks the nearest it can.
    pub fn set_rate(&self, fps: u32) -> io::Result<()> {
        if fps == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a rate of 0"));
        }
        let mut parm = self.params()?;
        // SAFETY: for a capture type the `capture` member is the one in use; plain integers.
        let capability = unsafe { parm.parm.capture.capability };
        if capability & V4L2_CAP_TIMEPERFRAME == 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the driver does not let the frame rate be set",
            ));
        }
        parm.parm.capture.timeperframe = v4l2_fract {
            numerator: 1,
            denominator: fps,
        };
        // SAFETY: VIDIOC_S_PARM takes a `struct v4l2_streamparm`.
        unsafe { ioctl(self.raw(), vidioc::VIDIOC_S_PARM, &mut parm) }
    }

    /// The rate the driver streams at now, when it says.
    pub fn rate(&self) -> Option<f64> {
        let parm = self.params().ok()?;
        // SAFETY: for a capture type the `capture` member is the one in use; plain integers.
        Fraction::from(unsafe { parm.parm.capture.timeperframe }).rate()
    }

    /// A control's value (`VIDIOC_G_CTRL`: integer, boolean and menu controls).
    pub fn control(&self, id: u32) -> io::Result<i32> {
        let mut control: v4l2_control = zeroed();
        control.id = id;
        // SAFETY: VIDIOC_G_CTRL takes a `struct v4l2_control`.
        unsafe { ioctl(self.raw(), vidioc::VIDIOC_G_CTRL, &mut control)? };
        Ok(control.value)
    }

    /// Set a control (`VIDIOC_S_CTRL`); the driver checks the value against the control's range.
    pub fn set_control(&self, id: u32, value: i32) -> io::Result<()> {
        let mut control: v4l2_control = zeroed();
        control.id = id;
        control.value = value;
        // SAFETY: VIDIOC_S_CTRL takes a `struct v4l2_control`.
        unsafe { ioctl(self.raw(), vidioc::VIDIOC_S_CTRL, &mut control) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stop_at_the_first_nul_and_never_run_past_the_array() {
        assert_eq!(text(b"uvcvideo\0garbage"), "uvcvideo");
        assert_eq!(text(b"no terminator"), "no terminator");
        assert_eq!(text(b""), "");
    }

    #[test]
    fn rates_of_intervals() {
        let f = |numerator, denominator| Fraction {
            numerator,
            denominator,
        };
        assert_eq!(Intervals::Discrete(f(1, 30)).top_rate(), Some(30.0));
        assert_eq!(
            Intervals::Range {
                min: f(1, 60),
                max: f(1, 5)
            }
            .top_rate(),
            Some(60.0)
        );
        assert_eq!(Intervals::Discrete(f(0, 30)).top_rate(), None);
    }

    #[test]
    fn a_regular_file_a_directory_and_a_missing_path_are_not_opened_as_a_camera() {
        let dir = std::env::temp_dir().join(format!("facekey-node-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("video0");
        std::fs::write(&file, b"not a camera").unwrap();
        let e = Device::open(&file).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        // A directory cannot be opened read-write at all.
        assert!(Device::open(&dir).is_err());
        let e = Device::open(&dir.join("missing")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = Device::open(Path::new("/dev/video\0x")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_character_device_that_is_not_v4l2_opens_close_on_exec_and_answers_enotty() {
        let device = Device::open(Path::new("/dev/null")).unwrap();
        let flags = rustix::io::fcntl_getfd(device.fd()).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        let status = rustix::fs::fcntl_getfl(device.fd()).unwrap();
        assert!(status.contains(rustix::fs::OFlags::NONBLOCK));
        let e = device.caps().unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::NOTTY.raw_os_error())
        );
        // Enumerations end at the first failure instead of looping.
        assert!(device.formats().is_empty());
        assert!(device.frame_sizes(*b"YUYV").is_empty());
        assert!(device.intervals(*b"YUYV", 640, 480).is_empty());
        assert!(device.set_format(*b"YUYV", 640, 480).is_err());
        assert!(device.rate().is_none());
        assert!(device.control(0x009a_0902).is_err());
    }
}
