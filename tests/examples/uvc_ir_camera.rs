//! The device side of a simulated IR camera whose emitter must be switched on through a UVC
//! extension unit: the userspace half of the kernel's UVC gadget (usb_f_uvc), run inside the qemu
//! guest that tests/vm/uvc-ir boots. The gadget is shown to the same kernel's uvcvideo over
//! dummy_hcd, so facekey talks to it through the real UVC host driver, not a mock.
//!
//! What it must never do: answer anything the contract below does not describe. Another
//! program (`facekey ir discover`) is written against exactly this behaviour.
//!
//! The contract (tests/vm/README.md repeats it):
//! - one format, GREY (Y800), 640x480 and 320x240, 30 or 15 frames per second;
//! - extension unit 4 with three controls: selector 1 (1 byte, GET/SET, changes nothing: a
//!   decoy), selector 2 (2 bytes, GET only: GET_INFO reports no SET), selector 6 (9 bytes,
//!   GET/SET; GET_MIN and GET_DEF all zero, GET_MAX [1,3,3,0,0,0,0,0,0], GET_RES all ones);
//! - the emitter is lit exactly while selector 6 holds its GET_MAX: frames then show the face
//!   prepared from the test data with a little noise per frame; otherwise they are black with a
//!   little sensor noise. Frames are steady (no lit/dark alternation).
//!
//! Usage:
//! - `uvc_ir_camera prepare PHOTO OUT.raw`: on the build host, the photo as 640x480 GREY bytes
//!   (fitted, centred, the sides filled with the photo's mean level);
//! - `uvc_ir_camera run FACE.raw`: in the guest, after the gadget is configured in configfs and
//!   bound; finds the gadget's output node itself and serves until killed. Lines start with
//!   `GADGET:` so the test script can show them.

use std::fs::{File, OpenOptions};
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
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

/// The extension unit's id: the gadget numbers its units camera terminal 1, processing unit 2,
/// output terminal 3, then extension units from 4 (tests/vm/uvc-ir checks it reads 4).
const XU_ID: u8 = 4;
const EMITTER_SELECTOR: u8 = 6;
const EMITTER_ON: [u8; 9] = [0x01, 0x03, 0x03, 0, 0, 0, 0, 0, 0];

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
/// Frame sizes in frame-index order (index 1 first), as tests/vm/uvc-ir declares them.
const SIZES: [(u32, u32); 2] = [(640, 480), (320, 240)];
/// Frame intervals in 100 ns units, as declared: 30 and 15 frames per second.
const INTERVALS: [u32; 2] = [333_333, 666_666];
const DEFAULT_INTERVAL: u32 = 666_666;

// UVC class requests (UVC 1.5, table A-8).
const SET_CUR: u8 = 0x01;
const GET_CUR: u8 = 0x81;
const GET_MIN: u8 = 0x82;
const GET_MAX: u8 = 0x83;
const GET_RES: u8 = 0x84;
const GET_LEN: u8 = 0x85;
const GET_INFO: u8 = 0x86;
const GET_DEF: u8 = 0x87;

// VideoStreaming interface control selectors.
const VS_PROBE_CONTROL: u8 = 0x01;
const VS_COMMIT_CONTROL: u8 = 0x02;
// VideoControl interface control selector for the last request's error.
const VC_REQUEST_ERROR_CODE_CONTROL: u8 = 0x02;
// bRequestErrorCode values.
const ERROR_NONE: u8 = 0x00;
const ERROR_INVALID_UNIT: u8 = 0x05;
const ERROR_INVALID_CONTROL: u8 = 0x06;
const ERROR_INVALID_REQUEST: u8 = 0x07;

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
const VIDIOC_SUBSCRIBE_EVENT: vidioc::_IOC_TYPE =
    ioc(IOC_WRITE, b'V', 90, mem::size_of::<v4l2_event_subscription>());

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

/// One extension-unit control: its length, what GET_INFO says, and its values.
struct Control {
    selector: u8,
    /// GET_INFO: bit 0 GET supported, bit 1 SET supported.
    info: u8,
    cur: Vec<u8>,
    min: Vec<u8>,
    max: Vec<u8>,
    res: Vec<u8>,
    def: Vec<u8>,
}

fn controls() -> Vec<Control> {
    vec![
        // A decoy: writable, changes nothing.
        Control {
            selector: 1,
            info: 0x03,
            cur: vec![0],
            min: vec![0],
            max: vec![0xff],
            res: vec![1],
            def: vec![0],
        },
        // Read-only: GET_INFO reports no SET.
        Control {
            selector: 2,
            info: 0x01,
            cur: vec![0x34, 0x12],
            min: vec![0, 0],
            max: vec![0xff, 0xff],
            res: vec![1, 0],
            def: vec![0x34, 0x12],
        },
        // The emitter: lit exactly while it holds its GET_MAX.
        Control {
            selector: EMITTER_SELECTOR,
            info: 0x03,
            cur: vec![0; 9],
            min: vec![0; 9],
            max: EMITTER_ON.to_vec(),
            res: vec![1; 9],
            def: vec![0; 9],
        },
    ]
}

/// `struct uvc_streaming_control` as far as UVC 1.5 goes (48 bytes); 1.0 uses the first 26,
/// 1.1 the first 34.
#[derive(Clone, Copy)]
struct Streaming {
    format: u8,
    frame: u8,
    interval: u32,
    max_payload: u32,
}

impl Streaming {
    fn bytes(&self) -> [u8; 48] {
        let mut b = [0u8; 48];
        let (w, h) = SIZES[usize::from(self.frame - 1)];
        b[0..2].copy_from_slice(&1u16.to_le_bytes()); // bmHint: dwFrameInterval fixed
        b[2] = self.format;
        b[3] = self.frame;
        b[4..8].copy_from_slice(&self.interval.to_le_bytes());
        b[18..22].copy_from_slice(&(w * h).to_le_bytes()); // dwMaxVideoFrameSize
        b[22..26].copy_from_slice(&self.max_payload.to_le_bytes());
        b[26..30].copy_from_slice(&48_000_000u32.to_le_bytes()); // dwClockFrequency
        b[30] = 0x03; // bmFramingInfo: FID and EOF in every payload header
        b[31] = 1; // bPreferedVersion
        b[32] = 1; // bMinVersion
        b[33] = 1; // bMaxVersion
        b
    }

    /// What the host asked, clamped to what the camera offers (UVC 1.5, 4.3.1.1.1: the device
    /// answers the nearest values it supports).
    fn negotiate(&self, asked: &[u8]) -> Streaming {
        let mut s = *self;
        if asked.len() >= 8 {
            s.format = 1;
            s.frame = asked[3].clamp(1, SIZES.len() as u8);
            let want = u32::from_le_bytes([asked[4], asked[5], asked[6], asked[7]]);
            s.interval = if want == 0 {
                DEFAULT_INTERVAL
            } else {
                *INTERVALS
                    .iter()
                    .min_by_key(|i| i.abs_diff(want))
                    .unwrap_or(&DEFAULT_INTERVAL)
            };
        }
        s
    }
}

/// An OUT request whose data phase is still to come (UVC_EVENT_DATA).
#[derive(Clone, Copy)]
enum Pending {
    Probe,
    Commit,
    Control(u8),
}

/// One mapped output buffer.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

struct Camera {
    file: File,
    control_interface: u8,
    streaming_interface: u8,
    controls: Vec<Control>,
    probe: Streaming,
    commit: Streaming,
    pending: Option<Pending>,
    last_error: u8,
    face: Vec<u8>,
    face_small: Vec<u8>,
    buffers: Vec<Mapping>,
    free: Vec<u32>,
    streaming: bool,
    next_frame: Instant,
    frames_sent: u64,
    noise: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("prepare") if args.len() == 4 => prepare(Path::new(&args[2]), Path::new(&args[3])),
        Some("run") if args.len() >= 3 => run(Path::new(&args[2]), &args[3..]),
        _ => {
            eprintln!("usage: uvc_ir_camera prepare PHOTO OUT.raw | run FACE.raw [--interfaces CONTROL STREAMING] [--max-payload BYTES]");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        println!("GADGET: error: {e}");
        std::process::exit(1);
    }
}

/// The photo as 640x480 GREY bytes: fitted inside, centred, the margins at the photo's mean.
fn prepare(photo: &Path, out: &Path) -> io::Result<()> {
    let img = image::open(photo)
        .map_err(|e| io::Error::other(format!("{}: {e}", photo.display())))?
        .to_luma8();
    let scale = (WIDTH as f32 / img.width() as f32).min(HEIGHT as f32 / img.height() as f32);
    let (w, h) = (
        (img.width() as f32 * scale).round() as u32,
        (img.height() as f32 * scale).round() as u32,
    );
    let scaled = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
    let mean = (img.pixels().map(|p| u64::from(p.0[0])).sum::<u64>()
        / u64::from(img.width() * img.height()).max(1)) as u8;
    let mut frame = image::GrayImage::from_pixel(WIDTH, HEIGHT, image::Luma([mean]));
    image::imageops::overlay(
        &mut frame,
        &scaled,
        i64::from((WIDTH - w) / 2),
        i64::from((HEIGHT - h) / 2),
    );
    std::fs::write(out, frame.as_raw())
}

fn run(face_path: &Path, rest: &[String]) -> io::Result<()> {
    let face = std::fs::read(face_path)?;
    if face.len() != (WIDTH * HEIGHT) as usize {
        return Err(io::Error::other(format!(
            "{}: {} bytes, {} expected (640x480 GREY)",
            face_path.display(),
            face.len(),
            WIDTH * HEIGHT
        )));
    }
    let mut interfaces = (0u8, 1u8);
    let mut max_payload = 3072u32;
    let mut usbip = false;
    let mut i = 0;
    while i < rest.len() {
        match rest[i].as_str() {
            "--interfaces" if i + 2 < rest.len() => {
                interfaces = (parse(&rest[i + 1])?, parse(&rest[i + 2])?);
                i += 3;
            }
            "--max-payload" if i + 1 < rest.len() => {
                max_payload = parse(&rest[i + 1])?;
                i += 2;
            }
            "--usbip" => {
                usbip = true;
                i += 1;
            }
            other => return Err(io::Error::other(format!("unknown argument {other}"))),
        }
    }
    let node = find_output_node()?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(&node)?;
    let defaults = Streaming {
        format: 1,
        frame: 1,
        interval: DEFAULT_INTERVAL,
        max_payload,
    };
    let face_small = halve(&face, WIDTH as usize, HEIGHT as usize);
    let mut camera = Camera {
        file,
        control_interface: interfaces.0,
        streaming_interface: interfaces.1,
        controls: controls(),
        probe: defaults,
        commit: defaults,
        pending: None,
        last_error: ERROR_NONE,
        face,
        face_small,
        buffers: Vec::new(),
        free: Vec::new(),
        streaming: false,
        next_frame: Instant::now(),
        frames_sent: 0,
        noise: 0x9e37_79b9_7f4a_7c15,
    };
    // Subscribing to SETUP connects the gadget (the host sees the device from then on).
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
        unsafe { ioctl(camera.fd(), VIDIOC_SUBSCRIBE_EVENT, &mut sub)? };
    }
    // Held for the life of the program (the kernel holds its own references too).
    let _wire = if usbip { Some(plug_usbip()?) } else { None };
    println!(
        "GADGET: serving {} (interfaces {} and {}, payload {} bytes)",
        node.display(),
        interfaces.0,
        interfaces.1,
        max_payload
    );
    camera.serve()
}

/// Plug the gadget into this machine's own USB host side: the two ends of a loopback TCP
/// connection go to the USB/IP virtual device controller (usbip-vudc, where the gadget is bound)
/// and to the USB/IP virtual host controller (vhci_hcd, where uvcvideo will find the camera). The
/// kernel speaks USB/IP on both ends; no packet passes through this program.
fn plug_usbip() -> io::Result<(std::net::TcpStream, std::net::TcpStream)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let host_end = std::net::TcpStream::connect(listener.local_addr()?)?;
    let (device_end, _) = listener.accept()?;
    let vudc = "/sys/devices/platform/usbip-vudc.0/usbip_sockfd";
    std::fs::write(vudc, device_end.as_raw_fd().to_string())
        .map_err(|e| io::Error::other(format!("{vudc}: {e}")))?;
    // Port 0 of the first virtual host controller, device id bus 1 device 2, high speed (3).
    let attach = "/sys/devices/platform/vhci_hcd.0/attach";
    std::fs::write(attach, format!("0 {} {} 3", host_end.as_raw_fd(), (1 << 16) | 2))
        .map_err(|e| io::Error::other(format!("{attach}: {e}")))?;
    println!("GADGET: plugged into vhci_hcd through usbip-vudc");
    Ok((device_end, host_end))
}

fn parse<T: std::str::FromStr>(s: &str) -> io::Result<T> {
    s.parse()
        .map_err(|_| io::Error::other(format!("not a number: {s}")))
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
            return Err(io::Error::other("no video output node (is the gadget bound?)"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A 2x2 box average: the 320x240 picture from the 640x480 one.
fn halve(src: &[u8], w: usize, h: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(w * h / 4);
    for y in (0..h).step_by(2) {
        for x in (0..w).step_by(2) {
            let s = u16::from(src[y * w + x])
                + u16::from(src[y * w + x + 1])
                + u16::from(src[(y + 1) * w + x])
                + u16::from(src[(y + 1) * w + x + 1]);
            out.push((s / 4) as u8);
        }
    }
    out
}

impl Camera {
    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    fn lit(&self) -> bool {
        self.controls
            .iter()
            .any(|c| c.selector == EMITTER_SELECTOR && c.cur == c.max)
    }

    fn serve(&mut self) -> io::Result<()> {
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
                UVC_EVENT_SETUP => self.setup(&data)?,
                UVC_EVENT_DATA => {
                    let len = i32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                    let len = usize::try_from(len).unwrap_or(0).min(60);
                    self.data(&data[4..4 + len]);
                }
                other => println!("GADGET: event {other:#x} ignored"),
            }
        }
    }

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

    fn stall(&mut self, error: u8) -> io::Result<()> {
        self.last_error = error;
        self.respond(-1, &[])
    }

    /// A class request on endpoint 0 (`struct usb_ctrlrequest` in the first 8 bytes).
    fn setup(&mut self, req: &[u8]) -> io::Result<()> {
        let request_type = req[0];
        let request = req[1];
        let value = u16::from_le_bytes([req[2], req[3]]);
        let index = u16::from_le_bytes([req[4], req[5]]);
        let length = u16::from_le_bytes([req[6], req[7]]);
        let interface = (index & 0xff) as u8;
        let entity = (index >> 8) as u8;
        let selector = (value >> 8) as u8;
        // Class requests to an interface only.
        if request_type & 0x60 != 0x20 || request_type & 0x1f != 0x01 {
            return self.stall(ERROR_INVALID_REQUEST);
        }
        let wlen = usize::from(length);
        if request == SET_CUR {
            let pending = if interface == self.streaming_interface {
                match selector {
                    VS_PROBE_CONTROL => Some(Pending::Probe),
                    VS_COMMIT_CONTROL => Some(Pending::Commit),
                    _ => None,
                }
            } else if interface == self.control_interface && entity == XU_ID {
                self.controls
                    .iter()
                    .find(|c| c.selector == selector && c.info & 0x02 != 0)
                    .filter(|c| c.cur.len() == wlen)
                    .map(|c| Pending::Control(c.selector))
            } else {
                None
            };
            return match pending {
                Some(p) => {
                    self.pending = Some(p);
                    self.last_error = ERROR_NONE;
                    self.respond(i32::from(length), &[])
                }
                None => self.stall(ERROR_INVALID_REQUEST),
            };
        }
        let answer: Option<Vec<u8>> = if interface == self.streaming_interface && entity == 0 {
            let s = match (selector, request) {
                (VS_PROBE_CONTROL, GET_CUR) => Some(self.probe),
                (VS_COMMIT_CONTROL, GET_CUR) => Some(self.commit),
                (VS_PROBE_CONTROL, GET_MIN | GET_DEF) => Some(Streaming {
                    frame: 1,
                    interval: if request == GET_MIN {
                        INTERVALS[0]
                    } else {
                        DEFAULT_INTERVAL
                    },
                    ..self.probe
                }),
                (VS_PROBE_CONTROL, GET_MAX) => Some(Streaming {
                    frame: SIZES.len() as u8,
                    interval: INTERVALS[INTERVALS.len() - 1],
                    ..self.probe
                }),
                _ => None,
            };
            match (s, request) {
                (Some(s), _) => Some(s.bytes().to_vec()),
                (None, GET_INFO) => Some(vec![0x03]),
                (None, GET_LEN) => Some(48u16.to_le_bytes().to_vec()),
                _ => None,
            }
        } else if interface == self.control_interface && entity == 0 {
            match (selector, request) {
                (VC_REQUEST_ERROR_CODE_CONTROL, GET_CUR) => Some(vec![self.last_error]),
                (VC_REQUEST_ERROR_CODE_CONTROL, GET_INFO) => Some(vec![0x01]),
                _ => None,
            }
        } else if interface == self.control_interface && entity == XU_ID {
            match self.controls.iter().find(|c| c.selector == selector) {
                None => {
                    self.last_error = ERROR_INVALID_CONTROL;
                    None
                }
                Some(c) => match request {
                    GET_CUR if c.info & 0x01 != 0 => Some(c.cur.clone()),
                    GET_MIN => Some(c.min.clone()),
                    GET_MAX => Some(c.max.clone()),
                    GET_RES => Some(c.res.clone()),
                    GET_DEF => Some(c.def.clone()),
                    GET_LEN => Some((c.cur.len() as u16).to_le_bytes().to_vec()),
                    GET_INFO => Some(vec![c.info]),
                    _ => None,
                },
            }
        } else {
            self.last_error = ERROR_INVALID_UNIT;
            None
        };
        match answer {
            Some(bytes) => {
                self.last_error = ERROR_NONE;
                let n = bytes.len().min(wlen);
                self.respond(n as i32, &bytes[..n])
            }
            None => {
                let error = if self.last_error == ERROR_NONE {
                    ERROR_INVALID_REQUEST
                } else {
                    self.last_error
                };
                if entity == XU_ID {
                    println!("GADGET: unit {entity} selector {selector} request {request:#04x} refused");
                }
                self.stall(error)
            }
        }
    }

    /// The data phase of the SET_CUR announced by the last SETUP.
    fn data(&mut self, bytes: &[u8]) {
        match self.pending.take() {
            Some(Pending::Probe) => self.probe = self.probe.negotiate(bytes),
            Some(Pending::Commit) => {
                self.commit = self.probe.negotiate(bytes);
                let (w, h) = SIZES[usize::from(self.commit.frame - 1)];
                println!(
                    "GADGET: committed GREY {w}x{h} at {:.1} fps",
                    1e7 / f64::from(self.commit.interval)
                );
            }
            Some(Pending::Control(selector)) => {
                let was = self.lit();
                if let Some(c) = self.controls.iter_mut().find(|c| c.selector == selector) {
                    if bytes.len() == c.cur.len() {
                        c.cur = bytes.to_vec();
                    }
                }
                let now = self.lit();
                println!(
                    "GADGET: SET_CUR unit {XU_ID} selector {selector} = {bytes:02x?}: emitter {}{}",
                    if now { "lit" } else { "dark" },
                    if now != was { " (changed)" } else { "" }
                );
            }
            None => println!("GADGET: data without a request ({} bytes)", bytes.len()),
        }
    }

    /// UVC_EVENT_STREAMON: the host selected the streaming alternate setting.
    fn start(&mut self) -> io::Result<()> {
        self.stop()?;
        let (w, h) = SIZES[usize::from(self.commit.frame - 1)];
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
            if self.lit() { "lit" } else { "dark" }
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
        let interval = Duration::from_nanos(u64::from(self.commit.interval) * 100);
        self.next_frame = self.next_frame.max(Instant::now() - interval) + interval;
        let Some(index) = self.free.pop() else {
            return Ok(());
        };
        let (w, h) = SIZES[usize::from(self.commit.frame - 1)];
        let size = (w * h) as usize;
        let lit = self.lit();
        let mapping = &self.buffers[index as usize];
        if mapping.len < size {
            return Err(io::Error::other("output buffer smaller than a frame"));
        }
        // SAFETY: the buffer is dequeued (owned by us until QBUF below), the mapping is live and
        // at least `size` bytes long; the slice ends before the QBUF.
        let out = unsafe { std::slice::from_raw_parts_mut(mapping.ptr.as_ptr(), size) };
        let face: &[u8] = if w == WIDTH { &self.face } else { &self.face_small };
        let mut state = self.noise;
        for (chunk, src) in out.chunks_mut(8).zip(face.chunks(8)) {
            // xorshift64: one draw gives eight pixels their noise.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let r = state.to_le_bytes();
            for ((o, s), n) in chunk.iter_mut().zip(src).zip(r) {
                *o = if lit {
                    // The face with +-3 levels of noise.
                    (i16::from(*s) + i16::from(n % 7) - 3).clamp(0, 255) as u8
                } else {
                    // A black sensor: 0..3.
                    n & 0x03
                };
            }
        }
        self.noise = state;
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
