//! The FFI edge of capture: memory-mapped streaming buffers, queue and dequeue, poll (the node and
//! its setup ioctls are in `node.rs`).
//!
//! Everything it returns is owned, checked data: a dequeued buffer's metadata, a byte slice that
//! lies inside a live mapping. It never blocks: the device is open
//! non-blocking, and waiting is `poll` with a timeout the caller derives from its deadline.
//!
//! Why not `v4l::io::mmap::Stream`: it queues the buffers and starts the stream only on the first
//! `next()`, so capture could not start while the models load; it cannot hand back the newest of
//! several ready frames; and its `Drop` panics when `VIDIOC_STREAMOFF` fails, which must never
//! happen inside a PAM module's host process.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::ptr::NonNull;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags};
use v4l::v4l2::vidioc;
use v4l::v4l_sys::{
    timeval, v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE as BUF_TYPE_VIDEO_CAPTURE, v4l2_buffer,
    v4l2_memory_V4L2_MEMORY_MMAP as MEMORY_MMAP, v4l2_requestbuffers, V4L2_BUF_FLAG_ERROR,
    V4L2_BUF_FLAG_TIMESTAMP_MASK, V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC,
};

use super::node::{ioctl, zeroed};

/// One memory-mapped capture buffer.
struct Mapping {
    ptr: NonNull<std::ffi::c_void>,
    len: usize,
}

/// A dequeued frame's metadata.
#[derive(Debug, Clone, Copy)]
pub struct Dequeued {
    pub index: usize,
    pub bytesused: usize,
    pub sequence: u32,
    /// The driver flagged the data as corrupted (V4L2_BUF_FLAG_ERROR).
    pub error: bool,
    /// Capture time on CLOCK_MONOTONIC, when the driver stamps with that clock.
    pub monotonic: Option<Duration>,
}

/// Memory-mapped streaming on a capture node: buffers requested, mapped and queued, stream on.
///
/// Dropping it stops the stream, unmaps and frees the buffers, best effort and without panicking.
/// The file descriptor is borrowed: the owner must keep it open for the life of this value.
pub struct MmapStream {
    fd: RawFd,
    buffers: Vec<Mapping>,
    streaming: bool,
}

// SAFETY: the mappings are plain memory owned by this value and only read through `&self` /
// written by the driver; nothing in it is tied to the thread that created it.
unsafe impl Send for MmapStream {}

impl MmapStream {
    /// Request `count` buffers, map and queue them all, and start streaming. Errors (EBUSY when
    /// another process streams from the node) come back as they are; a partial setup is undone.
    pub fn start(fd: BorrowedFd<'_>, count: u32) -> io::Result<MmapStream> {
        use std::os::fd::AsRawFd;
        let mut stream = MmapStream {
            fd: fd.as_raw_fd(),
            buffers: Vec::new(),
            streaming: false,
        };
        let mut req: v4l2_requestbuffers = zeroed();
        req.count = count;
        req.type_ = BUF_TYPE_VIDEO_CAPTURE;
        req.memory = MEMORY_MMAP;
        // SAFETY: VIDIOC_REQBUFS takes a `struct v4l2_requestbuffers`.
        unsafe { ioctl(stream.fd, vidioc::VIDIOC_REQBUFS, &mut req)? };
        if req.count == 0 {
            return Err(io::Error::other("the driver granted no capture buffers"));
        }
        for index in 0..req.count {
            let mut buf = stream.buffer(index);
            // SAFETY: VIDIOC_QUERYBUF takes a `struct v4l2_buffer`.
            unsafe { ioctl(stream.fd, vidioc::VIDIOC_QUERYBUF, &mut buf)? };
            // SAFETY: for MMAP buffers the driver fills the `offset` member of the union.
            let offset = unsafe { buf.m.offset };
            let len = buf.length as usize;
            // SAFETY: mapping `len` bytes at the offset VIDIOC_QUERYBUF gave for this fd is how
            // V4L2 exports a buffer; a null hint lets the kernel choose the address, so no
            // existing mapping is replaced. The mapping is released in `Drop`.
            let ptr = unsafe {
                rustix::mm::mmap(
                    std::ptr::null_mut(),
                    len,
                    rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                    rustix::mm::MapFlags::SHARED,
                    BorrowedFd::borrow_raw(stream.fd),
                    u64::from(offset),
                )
            }?;
            let ptr = NonNull::new(ptr).ok_or_else(|| io::Error::other("mmap returned null"))?;
            stream.buffers.push(Mapping { ptr, len });
        }
        for index in 0..stream.buffers.len() {
            stream.queue(index)?;
        }
        let mut kind = BUF_TYPE_VIDEO_CAPTURE as std::ffi::c_int;
        // SAFETY: VIDIOC_STREAMON takes an `int` holding the buffer type.
        unsafe { ioctl(stream.fd, vidioc::VIDIOC_STREAMON, &mut kind)? };
        stream.streaming = true;
        Ok(stream)
    }

    fn buffer(&self, index: u32) -> v4l2_buffer {
        let mut buf: v4l2_buffer = zeroed();
        buf.index = index;
        buf.type_ = BUF_TYPE_VIDEO_CAPTURE;
        buf.memory = MEMORY_MMAP;
        buf
    }

    /// How many buffers the driver granted.
    pub fn buffer_count(&self) -> usize {
        self.buffers.len()
    }

    /// Give buffer `index` back to the driver to fill.
    pub fn queue(&mut self, index: usize) -> io::Result<()> {
        let mut buf = self.buffer(index as u32);
        // SAFETY: VIDIOC_QBUF takes a `struct v4l2_buffer`.
        unsafe { ioctl(self.fd, vidioc::VIDIOC_QBUF, &mut buf) }
    }

    /// Take a filled buffer, if one is ready (the node is non-blocking: `None` on EAGAIN).
    pub fn dequeue(&mut self) -> io::Result<Option<Dequeued>> {
        let mut buf = self.buffer(0);
        // SAFETY: VIDIOC_DQBUF takes a `struct v4l2_buffer`.
        match unsafe { ioctl(self.fd, vidioc::VIDIOC_DQBUF, &mut buf) } {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
        let index = buf.index as usize;
        let Some(mapping) = self.buffers.get(index) else {
            return Err(io::Error::other(format!(
                "the driver returned buffer {index} of {}",
                self.buffers.len()
            )));
        };
        let clock = buf.flags & V4L2_BUF_FLAG_TIMESTAMP_MASK;
        Ok(Some(Dequeued {
            index,
            // Never trust bytesused past the mapping.
            bytesused: (buf.bytesused as usize).min(mapping.len),
            sequence: buf.sequence,
            error: buf.flags & V4L2_BUF_FLAG_ERROR != 0,
            monotonic: (clock == V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC)
                .then(|| timeval_duration(&buf.timestamp))
                .flatten(),
        }))
    }

    /// The bytes of a dequeued buffer. Valid until the buffer is queued again, which needs
    /// `&mut self`: the borrow checker keeps the driver from writing under a reader.
    pub fn data(&self, frame: &Dequeued) -> &[u8] {
        match self.buffers.get(frame.index) {
            // SAFETY: the mapping is `len` bytes long and stays mapped while `self` lives;
            // `bytesused` was clamped to `len`; the buffer is dequeued, so the driver does not
            // write it until `queue`, which takes `&mut self` and so ends this borrow.
            Some(m) => unsafe {
                std::slice::from_raw_parts(m.ptr.as_ptr() as *const u8, frame.bytesused)
            },
            None => &[],
        }
    }

    /// Wait until a buffer is ready, an error is pending, or `timeout` passes. `Ok(false)` on
    /// timeout. A signal ends the wait early with `Ok(true)`: the caller's dequeue then finds
    /// nothing and waits again with what is left of its deadline.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        // poll takes whole milliseconds: round up so a wait never ends before its deadline.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: `self.fd` is open for as long as `self` lives (see the type's contract).
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let mut fds = [PollFd::new(&fd, PollFlags::IN | PollFlags::PRI)];
        let timespec = rustix::time::Timespec {
            tv_sec: i64::from(ms / 1000),
            tv_nsec: i64::from(ms % 1000) * 1_000_000,
        };
        match poll(&mut fds, Some(&timespec)) {
            Ok(n) => Ok(n > 0),
            Err(rustix::io::Errno::INTR) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for MmapStream {
    fn drop(&mut self) {
        // Best effort: after an unplug every call fails with ENODEV, and that is fine.
        if self.streaming {
            let mut kind = BUF_TYPE_VIDEO_CAPTURE as std::ffi::c_int;
            // SAFETY: VIDIOC_STREAMOFF takes an `int` holding the buffer type.
            let _ = unsafe { ioctl(self.fd, vidioc::VIDIOC_STREAMOFF, &mut kind) };
        }
        for m in self.buffers.drain(..) {
            // SAFETY: `ptr` and `len` are exactly what mmap returned and used; nothing borrows
            // the mapping any more (`data` borrows end with `&mut self`).
            let _ = unsafe { rustix::mm::munmap(m.ptr.as_ptr(), m.len) };
        }
        let mut req: v4l2_requestbuffers = zeroed();
        req.type_ = BUF_TYPE_VIDEO_CAPTURE;
        req.memory = MEMORY_MMAP;
        // SAFETY: VIDIOC_REQBUFS takes a `struct v4l2_requestbuffers`; a count of 0 frees them.
        let _ = unsafe { ioctl(self.fd, vidioc::VIDIOC_REQBUFS, &mut req) };
    }
}

fn timeval_duration(t: &timeval) -> Option<Duration> {
    let secs = u64::try_from(t.tv_sec).ok()?;
    let micros = u32::try_from(t.tv_usec).ok()?;
    Some(Duration::from_secs(secs) + Duration::from_micros(u64::from(micros)))
}

/// Now on CLOCK_MONOTONIC, the clock V4L2 drivers stamp frames with (and `Instant` reads).
pub fn monotonic_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}
