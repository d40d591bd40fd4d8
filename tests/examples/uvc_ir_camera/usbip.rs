//! The USB/IP transport: this program is the whole USB device, attached to the kernel's USB/IP
//! virtual host controller (vhci_hcd) over a loopback TCP connection. vhci_hcd forwards every URB
//! uvcvideo submits (control transfers on endpoint 0, isochronous IN transfers on endpoint 0x81)
//! as USB/IP CMD_SUBMIT messages; the answers go back as RET_SUBMIT. The descriptors below are a
//! UVC 1.1 camera with the same units as the configfs gadget (camera terminal 1, processing unit
//! 2, extension unit 4, output terminal 3) and the same GREY format.
//!
//! Why it exists: usb_f_uvc streams over an isochronous endpoint only, and neither software
//! device controller of Linux 6.12 (dummy_hcd, usbip-vudc) carries isochronous data (gadget.rs).
//! vhci_hcd does, so frames reach uvcvideo this way.
//!
//! What it must never do: hold back an unlink (the host waits for it) or answer a URB before its
//! time slot (an idle stream would spin the emulated CPU).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use crate::device::{
    Device, Setup, DEFAULT_INTERVAL, INTERVALS, SET_CUR, SIZES, XU_GUID, XU_ID, Y800_GUID,
};

// USB/IP commands (Documentation/usb/usbip_protocol.rst).
const CMD_SUBMIT: u32 = 1;
const CMD_UNLINK: u32 = 2;
const RET_SUBMIT: u32 = 3;
const RET_UNLINK: u32 = 4;
const DIR_IN: u32 = 1;

const EPIPE: i32 = -32;
const ECONNRESET: i32 = -104;

/// Bytes per isochronous packet: wMaxPacketSize 1024 with two additional transactions per
/// microframe (high speed).
pub const PACKET: usize = 3072;
/// The endpoint's bInterval: one packet every 2^(3-1) = 4 microframes (500 µs), 6 MB/s, enough
/// for 640x480 at 15 fps. Each 32-packet URB then lasts 16 ms: an idle stream costs the emulated
/// CPU 62 URBs a second instead of 250.
const B_INTERVAL: u8 = 3;
/// How long one isochronous packet slot lasts on a high-speed bus: a microframe.
const MICROFRAME: Duration = Duration::from_micros(125);

/// Hand the host end of a connection to vhci_hcd: port 0 of the first virtual host controller,
/// device id bus 1 device 2, high speed (3).
pub fn attach(host_end: &TcpStream) -> io::Result<()> {
    let attach = "/sys/devices/platform/vhci_hcd.0/attach";
    std::fs::write(
        attach,
        format!("0 {} {} 3", host_end.as_raw_fd(), (1 << 16) | 2),
    )
    .map_err(|e| io::Error::other(format!("{attach}: {e}")))
}

/// A CMD_SUBMIT waiting for its answer.
struct Submit {
    seqnum: u32,
    ep: u32,
    direction: u32,
    /// (offset, length) of each isochronous packet.
    packets: Vec<(u32, u32)>,
    /// Microframes between packets (the URB's interval).
    interval: u32,
}

pub struct UsbIp {
    stream: TcpStream,
    device: Device,
    alt: u8,
    iso: VecDeque<Submit>,
    next_slot: Instant,
    /// The frame being sent and how much of it has gone.
    frame: Vec<u8>,
    sent: usize,
    fid: u8,
    next_frame: Instant,
    frames: u64,
    input: Vec<u8>,
    /// Held so the connection stays up even if vhci_hcd's reference were dropped.
    _host_end: TcpStream,
}

impl UsbIp {
    pub fn plug(device: Device) -> io::Result<UsbIp> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let host_end = TcpStream::connect(listener.local_addr()?)?;
        let (device_end, _) = listener.accept()?;
        device_end.set_nodelay(true)?;
        attach(&host_end)?;
        println!("GADGET: plugged into vhci_hcd as a USB/IP device");
        Ok(UsbIp {
            stream: device_end,
            device,
            alt: 0,
            iso: VecDeque::new(),
            next_slot: Instant::now(),
            frame: Vec::new(),
            sent: 0,
            fid: 0,
            next_frame: Instant::now(),
            frames: 0,
            input: Vec::new(),
            _host_end: host_end,
        })
    }

    pub fn serve(&mut self) -> io::Result<()> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let timeout = if self.iso.is_empty() {
                Duration::from_secs(1)
            } else {
                self.next_slot.saturating_duration_since(Instant::now())
            };
            let readable = {
                let fd = self.stream.as_fd();
                let mut fds = [PollFd::new(&fd, PollFlags::IN)];
                let ts = Timespec {
                    tv_sec: timeout.as_secs() as i64,
                    tv_nsec: i64::from(timeout.subsec_nanos()),
                };
                match poll(&mut fds, Some(&ts)) {
                    Ok(_) => fds[0].revents().intersects(PollFlags::IN | PollFlags::HUP),
                    Err(rustix::io::Errno::INTR) => false,
                    Err(e) => return Err(e.into()),
                }
            };
            if readable {
                let n = self.stream.read(&mut chunk)?;
                if n == 0 {
                    println!("GADGET: vhci_hcd closed the connection");
                    return Ok(());
                }
                self.input.extend_from_slice(&chunk[..n]);
                while let Some(used) = self.command()? {
                    self.input.drain(..used);
                }
            }
            if !self.iso.is_empty() && Instant::now() >= self.next_slot {
                self.answer_iso()?;
            }
        }
    }

    /// Handle the first complete command in `input`; how many bytes it took, or None when more
    /// bytes are needed.
    fn command(&mut self) -> io::Result<Option<usize>> {
        if self.input.len() < 48 {
            return Ok(None);
        }
        let b = &self.input;
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let (command, seqnum, direction, ep) = (word(0), word(4), word(12), word(16));
        match command {
            CMD_SUBMIT => {
                let length = word(24) as usize;
                let np = word(32) as i32;
                let np = if (1..=1024).contains(&np) {
                    np as usize
                } else {
                    0
                };
                let data_len = if direction == DIR_IN { 0 } else { length };
                let total = 48 + data_len + 16 * np;
                if self.input.len() < total {
                    return Ok(None);
                }
                let b = &self.input;
                let mut setup = [0u8; 8];
                setup.copy_from_slice(&b[40..48]);
                let data = b[48..48 + data_len].to_vec();
                let packets = (0..np)
                    .map(|i| {
                        let o = 48 + data_len + 16 * i;
                        (word(o), word(o + 4))
                    })
                    .collect();
                let submit = Submit {
                    seqnum,
                    ep,
                    direction,
                    packets,
                    interval: word(36).clamp(1, 1 << 15),
                };
                if ep == 0 {
                    self.control(&submit, &setup, &data, length)?;
                } else if ep == 1 && direction == DIR_IN && np > 0 {
                    if self.iso.is_empty() {
                        self.next_slot = self.next_slot.max(Instant::now());
                    }
                    self.iso.push_back(submit);
                } else {
                    self.ret_submit(&submit, EPIPE, &[], &[])?;
                }
                Ok(Some(total))
            }
            CMD_UNLINK => {
                let target = word(20);
                let status = match self.iso.iter().position(|s| s.seqnum == target) {
                    Some(i) => {
                        self.iso.remove(i);
                        ECONNRESET
                    }
                    None => 0,
                };
                let mut reply = header(RET_UNLINK, seqnum, direction, ep);
                reply.extend_from_slice(&status.to_be_bytes());
                reply.resize(48, 0);
                self.stream.write_all(&reply)?;
                Ok(Some(48))
            }
            other => Err(io::Error::other(format!("unknown USB/IP command {other}"))),
        }
    }

    /// A control transfer: standard requests from the descriptors, class requests from the
    /// camera.
    fn control(
        &mut self,
        submit: &Submit,
        setup: &[u8; 8],
        data: &[u8],
        len: usize,
    ) -> io::Result<()> {
        let s = Setup::parse(setup);
        if s.request_type & 0x60 == 0 {
            let answer: Option<Vec<u8>> = match (s.request_type, s.request) {
                (0x80, 0x06) => descriptor(s.value),
                (0x80..=0x82, 0x00) => Some(vec![0, 0]),
                (0x80, 0x08) => Some(vec![1]),
                (0x81, 0x0a) => Some(vec![if s.index == 1 { self.alt } else { 0 }]),
                (0x00, 0x05 | 0x09) | (0x00..=0x02, 0x01 | 0x03) => Some(Vec::new()),
                (0x01, 0x0b) => {
                    if s.index == 1 {
                        self.set_alt(s.value as u8);
                    }
                    Some(Vec::new())
                }
                _ => None,
            };
            return match answer {
                Some(mut bytes) => {
                    bytes.truncate(usize::from(s.length).min(len));
                    self.ret_submit(submit, 0, &bytes, &[])
                }
                None => self.ret_submit(submit, EPIPE, &[], &[]),
            };
        }
        if s.request == SET_CUR {
            if self.device.accepts_set(&s) {
                self.device.set(&s, data);
                self.ret_submit_out(submit, data.len())
            } else {
                self.ret_submit(submit, EPIPE, &[], &[])
            }
        } else {
            match self.device.get(&s) {
                Some(bytes) => self.ret_submit(submit, 0, &bytes, &[]),
                None => self.ret_submit(submit, EPIPE, &[], &[]),
            }
        }
    }

    fn set_alt(&mut self, alt: u8) {
        if alt == self.alt {
            return;
        }
        self.alt = alt;
        if alt == 1 {
            let (w, h) = self.device.commit.size();
            self.frame.clear();
            self.sent = 0;
            self.next_frame = Instant::now();
            println!(
                "GADGET: streaming GREY {w}x{h}, emitter {}",
                if self.device.lit() { "lit" } else { "dark" }
            );
        } else {
            println!("GADGET: stream stopped, {} frames sent so far", self.frames);
        }
    }

    /// Answer the oldest isochronous URB: one UVC payload per packet (a 2-byte header, then
    /// frame bytes), empty packets between frames.
    fn answer_iso(&mut self) -> io::Result<()> {
        let Some(submit) = self.iso.pop_front() else {
            return Ok(());
        };
        let now = Instant::now();
        self.next_slot = self.next_slot.max(now - Duration::from_millis(8))
            + MICROFRAME * submit.interval * submit.packets.len() as u32;
        let interval = Duration::from_nanos(u64::from(self.device.commit.interval) * 100);
        let mut data = Vec::new();
        let mut descriptors = Vec::with_capacity(16 * submit.packets.len());
        for &(offset, length) in &submit.packets {
            let mut actual = 0usize;
            if self.alt == 1 {
                if self.sent >= self.frame.len() && now >= self.next_frame {
                    let (w, h) = self.device.commit.size();
                    self.frame.resize((w * h) as usize, 0);
                    self.device.fill_frame(&mut self.frame);
                    self.sent = 0;
                    self.next_frame = self.next_frame.max(now - interval) + interval;
                }
                if self.sent < self.frame.len() {
                    let room = (length as usize).min(PACKET).saturating_sub(2);
                    let n = room.min(self.frame.len() - self.sent);
                    let eof = self.sent + n == self.frame.len();
                    // bmHeaderInfo: EOH, FID, EOF on the frame's last payload.
                    data.push(2);
                    data.push(0x80 | self.fid | if eof { 0x02 } else { 0 });
                    data.extend_from_slice(&self.frame[self.sent..self.sent + n]);
                    self.sent += n;
                    actual = 2 + n;
                    if eof {
                        self.fid ^= 1;
                        self.frames += 1;
                    }
                }
            }
            descriptors.extend_from_slice(&offset.to_be_bytes());
            descriptors.extend_from_slice(&length.to_be_bytes());
            descriptors.extend_from_slice(&(actual as u32).to_be_bytes());
            descriptors.extend_from_slice(&0u32.to_be_bytes());
        }
        self.ret_submit(&submit, 0, &data, &descriptors)
    }

    fn ret_submit(
        &mut self,
        submit: &Submit,
        status: i32,
        data: &[u8],
        iso: &[u8],
    ) -> io::Result<()> {
        self.reply(submit, status, data.len(), data, iso)
    }

    /// An OUT transfer's answer: how much was taken, no data back.
    fn ret_submit_out(&mut self, submit: &Submit, taken: usize) -> io::Result<()> {
        self.reply(submit, 0, taken, &[], &[])
    }

    fn reply(
        &mut self,
        submit: &Submit,
        status: i32,
        actual: usize,
        data: &[u8],
        iso: &[u8],
    ) -> io::Result<()> {
        let mut reply = header(RET_SUBMIT, submit.seqnum, submit.direction, submit.ep);
        reply.extend_from_slice(&status.to_be_bytes());
        reply.extend_from_slice(&(actual as u32).to_be_bytes());
        reply.extend_from_slice(&0u32.to_be_bytes()); // start_frame
        let np = if iso.is_empty() {
            0
        } else {
            submit.packets.len() as u32
        };
        reply.extend_from_slice(&np.to_be_bytes());
        reply.extend_from_slice(&0u32.to_be_bytes()); // error_count
        reply.resize(48, 0);
        reply.extend_from_slice(data);
        reply.extend_from_slice(iso);
        self.stream.write_all(&reply)
    }
}

fn header(command: u32, seqnum: u32, direction: u32, ep: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(48);
    for w in [command, seqnum, 0, direction, ep] {
        h.extend_from_slice(&w.to_be_bytes());
    }
    h
}

/// GET_DESCRIPTOR: device, configuration, strings; anything else (device qualifier, BOS) stalls.
fn descriptor(value: u16) -> Option<Vec<u8>> {
    let kind = (value >> 8) as u8;
    let index = (value & 0xff) as u8;
    match kind {
        1 => Some(vec![
            18, 1, 0x00, 0x02, // USB 2.0
            0xef, 0x02, 0x01, // miscellaneous class, interface association
            64, 0x6b, 0x1d, 0x02, 0x01, // ep0 64 bytes, 1d6b:0102
            0x00, 0x01, 1, 2, 3, 1, // bcdDevice 1.00, strings 1 2 3, one configuration
        ]),
        2 => Some(configuration()),
        3 => {
            let text = match index {
                0 => return Some(vec![4, 3, 0x09, 0x04]),
                1 => "facekey",
                2 => "Simulated IR Camera",
                3 => "0001",
                _ => return None,
            };
            let mut d = vec![0, 3];
            for u in text.encode_utf16() {
                d.extend_from_slice(&u.to_le_bytes());
            }
            d[0] = d.len() as u8;
            Some(d)
        }
        _ => None,
    }
}

/// The configuration descriptor with everything under it: an interface association, the
/// VideoControl interface (IT 1 > PU 2 > XU 4 > OT 3), the VideoStreaming interface with one
/// uncompressed GREY format, two frame sizes and an isochronous endpoint in alternate setting 1.
fn configuration() -> Vec<u8> {
    let le16 = |v: u16| v.to_le_bytes();
    let le32 = |v: u32| v.to_le_bytes();

    let mut vc = Vec::new();
    // Camera terminal (input terminal of type ITT_CAMERA), no controls.
    vc.extend_from_slice(&[
        18, 0x24, 0x02, 1, 0x01, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0,
    ]);
    // Processing unit 2, fed by 1, no controls (UVC 1.1 layout with bmVideoStandards).
    vc.extend_from_slice(&[12, 0x24, 0x05, 2, 1, 0, 0, 2, 0, 0, 0, 0]);
    // Extension unit 4, fed by 2: 3 controls, bmControls bits 0, 1, 5 (selectors 1, 2, 6).
    vc.extend_from_slice(&[26, 0x24, 0x06, XU_ID]);
    vc.extend_from_slice(&XU_GUID);
    vc.extend_from_slice(&[3, 1, 2, 1, 0x23, 0]);
    // Output terminal 3 (USB streaming), fed by the extension unit.
    vc.extend_from_slice(&[9, 0x24, 0x03, 3, 0x01, 0x01, 0, XU_ID, 0]);
    let mut vc_header = vec![13, 0x24, 0x01, 0x10, 0x01];
    vc_header.extend_from_slice(&le16((13 + vc.len()) as u16));
    vc_header.extend_from_slice(&le32(48_000_000));
    vc_header.extend_from_slice(&[1, 1]); // one streaming interface: 1

    let mut vs = Vec::new();
    // Uncompressed format 1: Y800, 8 bits per pixel, default frame 1.
    vs.extend_from_slice(&[27, 0x24, 0x04, 1, SIZES.len() as u8]);
    vs.extend_from_slice(&Y800_GUID);
    vs.extend_from_slice(&[8, 1, 0, 0, 0, 0]);
    for (i, (w, h)) in SIZES.iter().enumerate() {
        vs.extend_from_slice(&[
            (26 + 4 * INTERVALS.len()) as u8,
            0x24,
            0x05,
            (i + 1) as u8,
            0,
        ]);
        vs.extend_from_slice(&le16(*w as u16));
        vs.extend_from_slice(&le16(*h as u16));
        vs.extend_from_slice(&le32(w * h * 8 * 15));
        vs.extend_from_slice(&le32(w * h * 8 * 30));
        vs.extend_from_slice(&le32(w * h));
        vs.extend_from_slice(&le32(DEFAULT_INTERVAL));
        vs.push(INTERVALS.len() as u8);
        for interval in INTERVALS {
            vs.extend_from_slice(&le32(interval));
        }
    }
    // Colour matching: BT.709 primaries and transfer, SMPTE 170M matrix (the defaults).
    vs.extend_from_slice(&[6, 0x24, 0x0d, 1, 1, 4]);
    let mut vs_header = vec![14, 0x24, 0x01, 1];
    vs_header.extend_from_slice(&le16((14 + vs.len()) as u16));
    vs_header.extend_from_slice(&[0x81, 0, 3, 0, 0, 0, 1, 0]);

    let mut body = Vec::new();
    // Interface association: interfaces 0-1, video interface collection, string 2.
    body.extend_from_slice(&[8, 0x0b, 0, 2, 0x0e, 0x03, 0, 2]);
    // VideoControl interface 0, no endpoint.
    body.extend_from_slice(&[9, 0x04, 0, 0, 0, 0x0e, 0x01, 0, 2]);
    body.extend_from_slice(&vc_header);
    body.extend_from_slice(&vc);
    // VideoStreaming interface 1, alternate setting 0: no bandwidth.
    body.extend_from_slice(&[9, 0x04, 1, 0, 0, 0x0e, 0x02, 0, 0]);
    body.extend_from_slice(&vs_header);
    body.extend_from_slice(&vs);
    // Alternate setting 1: one isochronous IN endpoint, 3 x 1024 bytes every 4 microframes.
    body.extend_from_slice(&[9, 0x04, 1, 1, 1, 0x0e, 0x02, 0, 0]);
    let max_packet: u16 = 1024 | (2 << 11);
    body.extend_from_slice(&[7, 0x05, 0x81, 0x05]);
    body.extend_from_slice(&le16(max_packet));
    body.push(B_INTERVAL);

    let mut config = vec![9, 0x02];
    config.extend_from_slice(&le16((9 + body.len()) as u16));
    config.extend_from_slice(&[2, 1, 0, 0x80, 250]);
    config.extend_from_slice(&body);
    config
}
