//! The gadget transport: the userspace half of the kernel's UVC function (usb_f_uvc, configured
//! in configfs by tests/vm/uvc-ir). Class requests arrive as UVC_EVENT_SETUP / UVC_EVENT_DATA on
//! the gadget's V4L2 output node and are answered with UVCIOC_SEND_RESPONSE; frames go out through
//! the node's output queue after UVC_EVENT_STREAMON.
//!
//! The UVC function streams over an isochronous endpoint only. Neither software USB device
//! controller of Linux 6.12 carries isochronous data: dummy_hcd offers no isochronous endpoint
//! (binding fails with "Unable to allocate streaming EP"), usbip-vudc fails every isochronous URB
//! with -EXDEV ("TODO: support" in vudc_transfer.c). So through this transport the controls work
//! end to end and frames do not arrive; `usbip.rs` carries both.
//!
//! The one file of this program, with usbip.rs, where pointers are touched.

use std::fs::{File, OpenOptions};
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use v4l::v4l2;
use v4l::v4l2::vidioc;
use v4l::v4l_sys::{
    v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_OUTPUT as BUF_TYPE_VIDEO_OUTPUT, v4l2_buffer,
    v4l2_capability, v4l2_event, v4l2_event_subscription, v4l2_format,
    v4l2_memory_V4L2_MEMORY_MMAP as MEMORY_MMAP, v4l2_requestbuffers, V4L2_CAP_DEVICE_CAPS,
    V4L2_CAP_VIDEO_OUTPUT, V4L2_EVENT_PRIVATE_START,
};

use crate::device::{Device, Setup, SET_CUR};

// linux/usb/g_uvc.h: the gadget's events and its one ioctl.
const UVC_EVENT_CONNECT: u32 = V4L2_EVENT_PRIVATE_START;
const UVC_EVENT_DISCONNECT: u32 = V4L2_EVENT_PRIVATE_START + 1;
const UVC_EVENT_STREAMON: u32 = V4L2_EVENT_PRIVATE_START + 2;
const UVC_EVENT_STREAMOFF: u32 = V4L2_EVENT_PRIVATE_START + 3;
const UVC_EVENT_SETUP: u32 = V4L2_EVENT_PRIVATE_START + 4;
const UVC_EVENT_DATA: u32 = V4L2_EVENT_PRIVATE_START + 5;

/// `struct uvc_request_data`: the reply to a SETUP event (a negative length stalls endpoint 0).
#[repr(C)]
struct RequestData {
    length: i32,
    data: [u8; 60],
}

/// `_IOC(dir, type, nr, size)` of asm-generic/ioctl.h.
const fn ioc(dir: u64, kind: u8, nr: u8, size: usize) -> vidioc::_IOC_TYPE {
    ((dir << 30) | ((size as u64) << 16) | ((kind as u64) << 8) | nr as u64) as vidioc::_IOC_TYPE
}
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
const UVCIOC_SEND_RESPONSE: vidioc::_IOC_TYPE =
    ioc(IOC_WRITE, b'U', 1, mem::size_of::<RequestData>());
const VIDIOC_DQEVENT: vidioc::_IOC_TYPE = ioc(IOC_READ, b'V', 89, mem::size_of::<v4l2_event>());
const VIDIOC_SUBSCRIBE_EVENT: vidioc::_IOC_TYPE = ioc(
    IOC_WRITE,
    b'V',
    90,
    mem::size_of::<v4l2_event_subscription>(),
);

/// One ioctl on a plain struct, retried when a signal interrupts it.
///
/// # Safety
/// `request` must be an ioctl whose argument type is exactly `T`.
unsafe fn ioctl<T>(fd: RawFd, request: vidioc::_IOC_TYPE, arg: &mut T) -> io::Result<()> {
    loop {
        // SAFETY: `arg` is a valid exclusive reference to a `T`, the argument type of `request`
        // (the caller's promise); the kernel keeps no pointer after returning.
        match unsafe { v4l2::ioctl(fd, request, arg as *mut T as *mut std::ffi::c_void) } {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A kernel struct of integers and arrays of integers with every byte zero.
fn zeroed<T: Zeroable>() -> T {
    // SAFETY: `Zeroable` is only implemented for bindgen structs of integers, arrays and unions
    // of those, for which all-zero bytes are a valid value.
    unsafe { mem::zeroed() }
}
trait Zeroable {}
impl Zeroable for v4l2_capability {}
impl Zeroable for v4l2_buffer {}
impl Zeroable for v4l2_requestbuffers {}
impl Zeroable for v4l2_event {}
impl Zeroable for v4l2_event_subscription {}
impl Zeroable for v4l2_format {}

/// One mapped output buffer.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

pub struct Gadget {
    file: File,
    device: Device,
    /// The SET_CUR whose data phase (UVC_EVENT_DATA) is still to come.
    pending: Option<Setup>,
    buffers: Vec<Mapping>,
    free: Vec<u32>,
    streaming: bool,
    next_frame: Instant,
    frames_sent: u64,
    /// Held while the gadget is plugged into this machine's host side over USB/IP.
    _wire: Option<(std::net::TcpStream, std::net::TcpStream)>,
}

impl Gadget {
    /// Open the gadget's node and subscribe to its events, which connects the gadget (the host
    /// sees the device from then on); with `usbip`, plug it into vhci_hcd through usbip-vudc.
    pub fn open(device: Device, usbip: bool) -> io::Result<Gadget> {
        let node = find_output_node()?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&node)?;
        for kind in [
            UVC_EVENT_CONNECT,
            UVC_EVENT_DISCONNECT,
            UVC_EVENT_STREAMON,
            UVC_EVENT_STREAMOFF,
            UVC_EVENT_DATA,
            UVC_EVENT_SETUP,
        ] {
            let mut sub: v4l2_event_subscription = zeroed();
            sub.type_ = kind;
            // SAFETY: VIDIOC_SUBSCRIBE_EVENT takes a `struct v4l2_event_subscription`.
            unsafe { ioctl(file.as_raw_fd(), VIDIOC_SUBSCRIBE_EVENT, &mut sub)? };
        }
        let wire = if usbip { Some(plug_usbip()?) } else { None };
        println!("GADGET: serving {} through the UVC gadget", node.display());
        Ok(Gadget {
            file,
            device,
            pending: None,
            buffers: Vec::new(),
            free: Vec::new(),
            streaming: false,
            next_frame: Instant::now(),
            frames_sent: 0,
            _wire: wire,
        })
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn serve(&mut self) -> io::Result<()> {
        loop {
            let timeout = if self.streaming {
                self.next_frame.saturating_duration_since(Instant::now())
            } else {
                Duration::from_secs(1)
            };
            let flags = {
                let fd: BorrowedFd<'_> = self.file.as_fd();
                let mut fds = [PollFd::new(&fd, PollFlags::PRI | PollFlags::OUT)];
                let ts = Timespec {
                    tv_sec: timeout.as_secs() as i64,
                    tv_nsec: i64::from(timeout.subsec_nanos()),
                };
                match poll(&mut fds, Some(&ts)) {
                    Ok(_) => fds[0].revents(),
                    Err(rustix::io::Errno::INTR) => PollFlags::empty(),
                    Err(e) => return Err(e.into()),
                }
            };
            if flags.contains(PollFlags::PRI) {
                self.events()?;
            }
            if self.streaming {
                self.reclaim()?;
                if Instant::now() >= self.next_frame {
                    self.send_frame()?;
                }
            }
        }
    }

    fn events(&mut self) -> io::Result<()> {
        loop {
            let mut event: v4l2_event = zeroed();
            // SAFETY: VIDIOC_DQEVENT takes a `struct v4l2_event`.
            match unsafe { ioctl(self.fd(), VIDIOC_DQEVENT, &mut event) } {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => {
                    return Ok(())
                }
                Err(e) => return Err(e),
            }
            // SAFETY: every member of the union is plain bytes; `data` covers all 64.
            let data = unsafe { event.u.data };
            match event.type_ {
                UVC_EVENT_CONNECT => println!("GADGET: connected"),
                UVC_EVENT_DISCONNECT => {
                    println!("GADGET: disconnected");
                    self.stop()?;
                }
                UVC_EVENT_STREAMON => self.start()?,
                UVC_EVENT_STREAMOFF => self.stop()?,
                UVC_EVENT_SETUP => {
                    let setup = Setup::parse(&data);
                    if setup.request == SET_CUR {
                        if self.device.accepts_set(&setup) {
                            self.pending = Some(setup);
                            self.respond(i32::from(setup.length), &[])?;
                        } else {
                            self.respond(-1, &[])?;
                        }
                    } else {
                        match self.device.get(&setup) {
                            Some(bytes) => self.respond(bytes.len() as i32, &bytes)?,
                            None => self.respond(-1, &[])?,
                        }
                    }
                }
                UVC_EVENT_DATA => {
                    let len = i32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                    let len = usize::try_from(len).unwrap_or(0).min(60);
                    match self.pending.take() {
                        Some(setup) => self.device.set(&setup, &data[4..4 + len]),
                        None => println!("GADGET: data without a request ({len} bytes)"),
                    }
                }
                other => println!("GADGET: event {other:#x} ignored"),
            }
        }
    }

    /// Answer the last SETUP: `length` bytes of `bytes`, or a stall when negative.
    fn respond(&self, length: i32, bytes: &[u8]) -> io::Result<()> {
        let mut reply = RequestData {
            length,
            data: [0; 60],
        };
        let n = bytes.len().min(60);
        reply.data[..n].copy_from_slice(&bytes[..n]);
        // SAFETY: UVCIOC_SEND_RESPONSE takes a `struct uvc_request_data`, which `RequestData`
        // reproduces (an s32 and 60 bytes, 64 in all).
        unsafe { ioctl(self.fd(), UVCIOC_SEND_RESPONSE, &mut reply) }
    }

    /// UVC_EVENT_STREAMON: the host selected the streaming alternate setting.
    fn start(&mut self) -> io::Result<()> {
        self.stop()?;
        let (w, h) = self.device.commit.size();
        let mut fmt: v4l2_format = zeroed();
        fmt.type_ = BUF_TYPE_VIDEO_OUTPUT;
        // `pix`: the member for single-planar video formats.
        fmt.fmt.pix.width = w;
        fmt.fmt.pix.height = h;
        fmt.fmt.pix.pixelformat = u32::from_le_bytes(*b"GREY");
        fmt.fmt.pix.field = 1; // V4L2_FIELD_NONE
        fmt.fmt.pix.bytesperline = w;
        fmt.fmt.pix.sizeimage = w * h;
        // SAFETY: VIDIOC_S_FMT takes a `struct v4l2_format`.
        unsafe { ioctl(self.fd(), vidioc::VIDIOC_S_FMT, &mut fmt)? };
        let mut req: v4l2_requestbuffers = zeroed();
        req.count = 4;
        req.type_ = BUF_TYPE_VIDEO_OUTPUT;
        req.memory = MEMORY_MMAP;
        // SAFETY: VIDIOC_REQBUFS takes a `struct v4l2_requestbuffers`.
        unsafe { ioctl(self.fd(), vidioc::VIDIOC_REQBUFS, &mut req)? };
        for index in 0..req.count {
            let mut buf = self.buffer(index);
            // SAFETY: VIDIOC_QUERYBUF takes a `struct v4l2_buffer`.
            unsafe { ioctl(self.fd(), vidioc::VIDIOC_QUERYBUF, &mut buf)? };
            // SAFETY: for MMAP buffers the driver fills the `offset` member.
            let offset = unsafe { buf.m.offset };
            let len = buf.length as usize;
            // SAFETY: maps `len` bytes at the offset VIDIOC_QUERYBUF gave for this fd; a null
            // hint replaces no existing mapping. Unmapped in `stop`.
            let ptr = unsafe {
                rustix::mm::mmap(
                    std::ptr::null_mut(),
                    len,
                    rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                    rustix::mm::MapFlags::SHARED,
                    self.file.as_fd(),
                    u64::from(offset),
                )
            }?;
            let ptr = NonNull::new(ptr.cast::<u8>())
                .ok_or_else(|| io::Error::other("mmap returned null"))?;
            self.buffers.push(Mapping { ptr, len });
            self.free.push(index);
        }
        // Two frames ready before the stream starts, then one per frame interval.
        self.send_frame()?;
        self.send_frame()?;
        let mut kind = BUF_TYPE_VIDEO_OUTPUT as std::ffi::c_int;
        // SAFETY: VIDIOC_STREAMON takes an `int` holding the buffer type.
        unsafe { ioctl(self.fd(), vidioc::VIDIOC_STREAMON, &mut kind)? };
        self.streaming = true;
        self.next_frame = Instant::now();
        println!(
            "GADGET: streaming GREY {w}x{h}, {} buffers, emitter {}",
            req.count,
            if self.device.lit() { "lit" } else { "dark" }
        );
        Ok(())
    }

    fn stop(&mut self) -> io::Result<()> {
        if self.streaming {
            let mut kind = BUF_TYPE_VIDEO_OUTPUT as std::ffi::c_int;
            // SAFETY: VIDIOC_STREAMOFF takes an `int` holding the buffer type.
            unsafe { ioctl(self.fd(), vidioc::VIDIOC_STREAMOFF, &mut kind)? };
            self.streaming = false;
            println!("GADGET: stream stopped after {} frames", self.frames_sent);
        }
        for m in self.buffers.drain(..) {
            // SAFETY: `m` is a mapping made in `start` and not yet unmapped; no slice into it
            // outlives `send_frame`.
            let _ = unsafe { rustix::mm::munmap(m.ptr.as_ptr().cast(), m.len) };
        }
        self.free.clear();
        let mut req: v4l2_requestbuffers = zeroed();
        req.type_ = BUF_TYPE_VIDEO_OUTPUT;
        req.memory = MEMORY_MMAP;
        // SAFETY: VIDIOC_REQBUFS takes a `struct v4l2_requestbuffers`; count 0 frees them.
        let _ = unsafe { ioctl(self.fd(), vidioc::VIDIOC_REQBUFS, &mut req) };
        Ok(())
    }

    fn buffer(&self, index: u32) -> v4l2_buffer {
        let mut buf: v4l2_buffer = zeroed();
        buf.index = index;
        buf.type_ = BUF_TYPE_VIDEO_OUTPUT;
        buf.memory = MEMORY_MMAP;
        buf
    }

    /// Take back every buffer the gadget has sent.
    fn reclaim(&mut self) -> io::Result<()> {
        loop {
            let mut buf = self.buffer(0);
            // SAFETY: VIDIOC_DQBUF takes a `struct v4l2_buffer`.
            match unsafe { ioctl(self.fd(), vidioc::VIDIOC_DQBUF, &mut buf) } {
                Ok(()) => self.free.push(buf.index),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // The host went away mid-stream: wait for its next STREAMON.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error()) => {
                    return Ok(())
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Fill a free buffer with the next frame and queue it; with none free, skip this frame.
    fn send_frame(&mut self) -> io::Result<()> {
        let interval = Duration::from_nanos(u64::from(self.device.commit.interval) * 100);
        self.next_frame = self.next_frame.max(Instant::now() - interval) + interval;
        let Some(index) = self.free.pop() else {
            return Ok(());
        };
        let (w, h) = self.device.commit.size();
        let size = (w * h) as usize;
        let mapping = &self.buffers[index as usize];
        if mapping.len < size {
            return Err(io::Error::other("output buffer smaller than a frame"));
        }
        // SAFETY: the buffer is dequeued (ours until the QBUF below), the mapping is live and at
        // least `size` bytes long; the slice ends before the QBUF.
        let out = unsafe { std::slice::from_raw_parts_mut(mapping.ptr.as_ptr(), size) };
        self.device.fill_frame(out);
        let mut buf = self.buffer(index);
        buf.bytesused = size as u32;
        buf.field = 1;
        // SAFETY: VIDIOC_QBUF takes a `struct v4l2_buffer`.
        match unsafe { ioctl(self.fd(), vidioc::VIDIOC_QBUF, &mut buf) } {
            Ok(()) => {
                self.frames_sent += 1;
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error()) => {
                self.free.push(index);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// The first /dev/video node that offers video output: the gadget's (uvcvideo's are capture).
fn find_output_node() -> io::Result<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut nodes: Vec<PathBuf> = std::fs::read_dir("/dev")?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("video"))
            })
            .collect();
        nodes.sort();
        for node in nodes {
            let Ok(file) = OpenOptions::new().read(true).write(true).open(&node) else {
                continue;
            };
            let mut caps: v4l2_capability = zeroed();
            // SAFETY: VIDIOC_QUERYCAP takes a `struct v4l2_capability`.
            if unsafe { ioctl(file.as_raw_fd(), vidioc::VIDIOC_QUERYCAP, &mut caps) }.is_err() {
                continue;
            }
            let device_caps = if caps.capabilities & V4L2_CAP_DEVICE_CAPS != 0 {
                caps.device_caps
            } else {
                caps.capabilities
            };
            if device_caps & V4L2_CAP_VIDEO_OUTPUT != 0 {
                return Ok(node);
            }
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(
                "no video output node (is the gadget bound?)",
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Plug the gadget into this machine's own USB host side: the two ends of a loopback TCP
/// connection go to the USB/IP virtual device controller (usbip-vudc, where the gadget is bound)
/// and to the USB/IP virtual host controller (vhci_hcd, where uvcvideo finds the camera). The
/// kernel speaks USB/IP on both ends; no packet passes through this program.
fn plug_usbip() -> io::Result<(std::net::TcpStream, std::net::TcpStream)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let host_end = std::net::TcpStream::connect(listener.local_addr()?)?;
    let (device_end, _) = listener.accept()?;
    let vudc = "/sys/devices/platform/usbip-vudc.0/usbip_sockfd";
    std::fs::write(vudc, device_end.as_raw_fd().to_string())
        .map_err(|e| io::Error::other(format!("{vudc}: {e}")))?;
    crate::usbip::attach(&host_end)?;
    println!("GADGET: plugged into vhci_hcd through usbip-vudc");
    Ok((device_end, host_end))
}
