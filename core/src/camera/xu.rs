//! UVC extension-unit (XU) controls: `UVCIOC_CTRL_QUERY` on an open capture node.
//!
//! Extension units are a camera maker's own controls; on most "Windows Hello" cameras one of them
//! switches the infrared emitter on. The kernel's uvcvideo driver passes a query (GET_INFO,
//! GET_LEN, GET_CUR, GET_MIN, GET_MAX, GET_RES, GET_DEF, SET_CUR) for a unit and selector straight
//! to the camera; the unit ids come from the camera's descriptors ([`super::descriptors`]).
//!
//! What this module must never do: write a control on its own initiative (it only carries out the
//! queries its callers ask for: discovery in [`super::emitter`], or the stored setting at open),
//! hand the kernel a buffer shorter than the size it announces, or panic. The confined part of a
//! decision cannot issue these queries at all: the seccomp filter of [`crate::confine`] does not
//! allow this ioctl number.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `struct uvc_xu_control_query` (linux/uvcvideo.h): unit, selector, query, size, data pointer.
/// `repr(C)` gives the kernel's layout: offsets 0, 1, 2, 4, 8 and 16 bytes on 64-bit machines.
#[repr(C)]
struct RawQuery {
    unit: u8,
    selector: u8,
    query: u8,
    size: u16,
    data: *mut u8,
}

/// `_IOWR('u', 0x21, struct uvc_xu_control_query)`: 0xC0107521 on 64-bit machines. Written out
/// because bindgen (through v4l) does not cover uvcvideo.h.
pub const UVCIOC_CTRL_QUERY: u64 =
    (3 << 30) | ((std::mem::size_of::<RawQuery>() as u64) << 16) | ((b'u' as u64) << 8) | 0x21;

/// The largest control this module reads or writes. UVC allows 65535 bytes; the controls that
/// light emitters are a few bytes, and nothing good comes of a longer one.
pub const MAX_CONTROL_LEN: u16 = 1024;

/// GET_INFO bits (UVC 1.5, 4.1.2): the control can be read, can be written.
pub const INFO_GET: u8 = 0x01;
pub const INFO_SET: u8 = 0x02;

/// One UVC control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    SetCur,
    GetCur,
    GetMin,
    GetMax,
    GetRes,
    GetLen,
    GetInfo,
    GetDef,
}

impl Request {
    /// The request code (linux/usb/video.h, UVC_SET_CUR ... UVC_GET_DEF).
    pub fn code(self) -> u8 {
        match self {
            Request::SetCur => 0x01,
            Request::GetCur => 0x81,
            Request::GetMin => 0x82,
            Request::GetMax => 0x83,
            Request::GetRes => 0x84,
            Request::GetLen => 0x85,
            Request::GetInfo => 0x86,
            Request::GetDef => 0x87,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Request::SetCur => "SET_CUR",
            Request::GetCur => "GET_CUR",
            Request::GetMin => "GET_MIN",
            Request::GetMax => "GET_MAX",
            Request::GetRes => "GET_RES",
            Request::GetLen => "GET_LEN",
            Request::GetInfo => "GET_INFO",
            Request::GetDef => "GET_DEF",
        }
    }
}

/// A control: extension unit id and selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ControlId {
    pub unit: u8,
    pub selector: u8,
}

impl fmt::Display for ControlId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unit {} selector {}", self.unit, self.selector)
    }
}

/// A failed query, naming the control and the request.
#[derive(thiserror::Error, Debug)]
#[error("{control} {}: {}", request.name(), reason(source))]
pub struct XuError {
    pub control: ControlId,
    pub request: Request,
    #[source]
    pub source: io::Error,
}

fn reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) if code == rustix::io::Errno::NOTTY.raw_os_error() => {
            "the device does not take UVC extension-unit queries (not a camera run by the uvcvideo driver)"
                .to_owned()
        }
        Some(code) if code == rustix::io::Errno::NOENT.raw_os_error() => {
            "the camera has no such unit or control".to_owned()
        }
        Some(code) if code == rustix::io::Errno::PIPE.raw_os_error() => {
            "the camera refused the request (stalled)".to_owned()
        }
        _ => e.to_string(),
    }
}

/// Carry out one query on `fd`. `data` is both the value sent (SET_CUR) and the answer (GET_*);
/// its length is the size announced to the kernel.
pub fn query(
    fd: BorrowedFd<'_>,
    control: ControlId,
    request: Request,
    data: &mut [u8],
) -> Result<(), XuError> {
    let fail = |source| XuError {
        control,
        request,
        source,
    };
    let size = u16::try_from(data.len())
        .ok()
        .filter(|n| *n > 0 && *n <= MAX_CONTROL_LEN)
        .ok_or_else(|| {
            fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a control value of {} bytes (1 to {MAX_CONTROL_LEN} are allowed)",
                    data.len()
                ),
            ))
        })?;
    let mut raw = RawQuery {
        unit: control.unit,
        selector: control.selector,
        query: request.code(),
        size,
        data: data.as_mut_ptr(),
    };
    // SAFETY: UVCIOC_CTRL_QUERY takes a `struct uvc_xu_control_query`, which `RawQuery` lays out
    // exactly (repr(C), and the ioctl number encodes its size). `raw.data` points at `data`, which
    // is valid for reads and writes of `size` bytes and is borrowed exclusively for this call; the
    // driver copies at most `size` bytes in or out and keeps no pointer after returning.
    unsafe {
        super::node::ioctl(
            fd.as_raw_fd(),
            UVCIOC_CTRL_QUERY as v4l::v4l2::vidioc::_IOC_TYPE,
            &mut raw,
        )
    }
    .map_err(fail)
}

/// GET_INFO: whether the control can be read and written ([`INFO_GET`], [`INFO_SET`]).
pub fn info(fd: BorrowedFd<'_>, control: ControlId) -> Result<u8, XuError> {
    let mut byte = [0u8; 1];
    query(fd, control, Request::GetInfo, &mut byte)?;
    Ok(byte[0])
}

/// GET_LEN: the control's size in bytes.
pub fn len(fd: BorrowedFd<'_>, control: ControlId) -> Result<u16, XuError> {
    let mut bytes = [0u8; 2];
    query(fd, control, Request::GetLen, &mut bytes)?;
    Ok(u16::from_le_bytes(bytes))
}

/// A GET_* request for a control of `len` bytes.
pub fn get(
    fd: BorrowedFd<'_>,
    control: ControlId,
    request: Request,
    len: u16,
) -> Result<Vec<u8>, XuError> {
    let mut value = vec![0u8; usize::from(len)];
    query(fd, control, request, &mut value)?;
    Ok(value)
}

/// SET_CUR.
pub fn set(fd: BorrowedFd<'_>, control: ControlId, value: &[u8]) -> Result<(), XuError> {
    let mut copy = value.to_vec();
    query(fd, control, Request::SetCur, &mut copy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    const EMITTER: ControlId = ControlId {
        unit: 14,
        selector: 6,
    };

    #[test]
    fn the_query_struct_and_ioctl_number_match_the_kernel_header() {
        if cfg!(target_pointer_width = "64") {
            assert_eq!(std::mem::size_of::<RawQuery>(), 16);
            assert_eq!(std::mem::offset_of!(RawQuery, size), 4);
            assert_eq!(std::mem::offset_of!(RawQuery, data), 8);
            assert_eq!(UVCIOC_CTRL_QUERY, 0xC010_7521);
        }
    }

    #[test]
    fn a_query_on_a_regular_file_fails_cleanly_naming_the_control() {
        let file = tempfile::tempfile().unwrap();
        let err = info(file.as_fd(), EMITTER).unwrap_err();
        assert_eq!(
            err.source.raw_os_error(),
            Some(rustix::io::Errno::NOTTY.raw_os_error())
        );
        let text = err.to_string();
        assert!(text.starts_with("unit 14 selector 6 GET_INFO: "), "{text}");
        assert!(
            text.contains("not a camera run by the uvcvideo driver"),
            "{text}"
        );
        let err = set(file.as_fd(), EMITTER, &[1, 3, 3, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(err.request, Request::SetCur);
    }

    #[test]
    fn a_query_on_a_non_v4l2_character_device_fails_cleanly() {
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .unwrap();
        assert!(len(null.as_fd(), EMITTER).is_err());
        assert!(get(null.as_fd(), EMITTER, Request::GetMax, 9).is_err());
    }

    #[test]
    fn empty_and_oversized_values_are_refused_before_the_kernel() {
        let file = tempfile::tempfile().unwrap();
        for len in [0usize, usize::from(MAX_CONTROL_LEN) + 1, 70_000] {
            let mut data = vec![0u8; len];
            let err = query(file.as_fd(), EMITTER, Request::SetCur, &mut data).unwrap_err();
            assert_eq!(err.source.kind(), io::ErrorKind::InvalidInput, "{len}");
        }
    }
}
