//! The camera itself, whatever carries it: the extension unit's controls, probe and commit, the
//! request error code, and the pixels of each frame. Both transports (`gadget`, `usbip`) hand it
//! the class requests they receive and ask it for frames.
//!
//! What it must never do: answer anything the contract (main.rs) does not describe.

/// The extension unit's id: in the gadget, configfs numbers its units camera terminal 1,
/// processing unit 2, output terminal 3, then extension units from 4; the USB/IP device's own
/// descriptors use the same ids.
pub const XU_ID: u8 = 4;
pub const EMITTER_SELECTOR: u8 = 6;
pub const EMITTER_ON: [u8; 9] = [0x01, 0x03, 0x03, 0, 0, 0, 0, 0, 0];
/// 16 bytes: "facekey-ir-emitr".
pub const XU_GUID: [u8; 16] = *b"facekey-ir-emitr";
/// Y800 (GREY): the UVC uncompressed-format GUID uvcvideo maps to V4L2_PIX_FMT_GREY.
pub const Y800_GUID: [u8; 16] = [
    b'Y', b'8', b'0', b'0', 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71,
];

pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 480;
/// Frame sizes in frame-index order (index 1 first).
pub const SIZES: [(u32, u32); 2] = [(640, 480), (320, 240)];
/// Frame intervals in 100 ns units: 30 and 15 frames per second.
pub const INTERVALS: [u32; 2] = [333_333, 666_666];
pub const DEFAULT_INTERVAL: u32 = 666_666;

// UVC class requests (UVC 1.5, table A-8).
pub const SET_CUR: u8 = 0x01;
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

/// A control request as it arrives on endpoint 0 (`struct usb_ctrlrequest`).
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub request_type: u8,
    pub request: u8,
    pub value: u16,
    pub index: u16,
    pub length: u16,
}

impl Setup {
    pub fn parse(b: &[u8]) -> Setup {
        Setup {
            request_type: b[0],
            request: b[1],
            value: u16::from_le_bytes([b[2], b[3]]),
            index: u16::from_le_bytes([b[4], b[5]]),
            length: u16::from_le_bytes([b[6], b[7]]),
        }
    }

    fn interface(&self) -> u8 {
        (self.index & 0xff) as u8
    }

    fn entity(&self) -> u8 {
        (self.index >> 8) as u8
    }

    fn selector(&self) -> u8 {
        (self.value >> 8) as u8
    }

    /// A class request addressed to an interface (the only kind the camera answers itself).
    pub fn is_class_interface(&self) -> bool {
        self.request_type & 0x60 == 0x20 && self.request_type & 0x1f == 0x01
    }
}

/// One extension-unit control: what GET_INFO says, and its values.
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
pub struct Streaming {
    pub frame: u8,
    pub interval: u32,
    max_payload: u32,
}

impl Streaming {
    fn bytes(&self) -> [u8; 48] {
        let mut b = [0u8; 48];
        let (w, h) = self.size();
        b[0..2].copy_from_slice(&1u16.to_le_bytes()); // bmHint: dwFrameInterval fixed
        b[2] = 1; // bFormatIndex
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

    pub fn size(&self) -> (u32, u32) {
        SIZES[usize::from(self.frame - 1)]
    }

    /// What the host asked, clamped to what the camera offers (UVC 1.5, 4.3.1.1.1: the device
    /// answers the nearest values it supports).
    fn negotiate(&self, asked: &[u8]) -> Streaming {
        let mut s = *self;
        if asked.len() >= 8 {
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

pub struct Device {
    control_interface: u8,
    streaming_interface: u8,
    controls: Vec<Control>,
    probe: Streaming,
    pub commit: Streaming,
    last_error: u8,
    face: Vec<u8>,
    face_small: Vec<u8>,
    noise: u64,
}

impl Device {
    pub fn new(face: Vec<u8>, interfaces: (u8, u8), max_payload: u32) -> Device {
        let defaults = Streaming {
            frame: 1,
            interval: DEFAULT_INTERVAL,
            max_payload,
        };
        let face_small = halve(&face, WIDTH as usize, HEIGHT as usize);
        Device {
            control_interface: interfaces.0,
            streaming_interface: interfaces.1,
            controls: controls(),
            probe: defaults,
            commit: defaults,
            last_error: ERROR_NONE,
            face,
            face_small,
            noise: 0x9e37_79b9_7f4a_7c15,
        }
    }

    pub fn lit(&self) -> bool {
        self.controls
            .iter()
            .any(|c| c.selector == EMITTER_SELECTOR && c.cur == c.max)
    }

    /// Whether a SET_CUR would be taken (its data phase still to come); false stalls it.
    pub fn accepts_set(&mut self, setup: &Setup) -> bool {
        let ok = setup.is_class_interface()
            && setup.request == SET_CUR
            && if setup.interface() == self.streaming_interface {
                matches!(setup.selector(), VS_PROBE_CONTROL | VS_COMMIT_CONTROL)
            } else {
                setup.interface() == self.control_interface
                    && setup.entity() == XU_ID
                    && self.controls.iter().any(|c| {
                        c.selector == setup.selector()
                            && c.info & 0x02 != 0
                            && c.cur.len() == usize::from(setup.length)
                    })
            };
        self.last_error = if ok {
            ERROR_NONE
        } else {
            ERROR_INVALID_REQUEST
        };
        ok
    }

    /// The data phase of a SET_CUR that `accepts_set` took.
    pub fn set(&mut self, setup: &Setup, bytes: &[u8]) {
        if setup.interface() == self.streaming_interface {
            match setup.selector() {
                VS_PROBE_CONTROL => self.probe = self.probe.negotiate(bytes),
                VS_COMMIT_CONTROL => {
                    self.commit = self.probe.negotiate(bytes);
                    let (w, h) = self.commit.size();
                    println!(
                        "GADGET: committed GREY {w}x{h} at {:.1} fps",
                        1e7 / f64::from(self.commit.interval)
                    );
                }
                _ => {}
            }
            return;
        }
        let selector = setup.selector();
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

    /// The answer to a GET_* class request, at most `length` bytes; `None` stalls it.
    pub fn get(&mut self, setup: &Setup) -> Option<Vec<u8>> {
        if !setup.is_class_interface() {
            self.last_error = ERROR_INVALID_REQUEST;
            return None;
        }
        let (interface, entity, selector, request) = (
            setup.interface(),
            setup.entity(),
            setup.selector(),
            setup.request,
        );
        let mut error = ERROR_INVALID_REQUEST;
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
                    error = ERROR_INVALID_CONTROL;
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
            error = ERROR_INVALID_UNIT;
            None
        };
        match answer {
            Some(mut bytes) => {
                self.last_error = ERROR_NONE;
                bytes.truncate(usize::from(setup.length));
                Some(bytes)
            }
            None => {
                if entity == XU_ID {
                    println!(
                        "GADGET: unit {entity} selector {selector} request {request:#04x} refused"
                    );
                }
                self.last_error = error;
                None
            }
        }
    }

    /// The next frame at the committed size into `out` (exactly width x height bytes): the face
    /// with +-3 levels of noise while the emitter is lit, a black sensor (0..3) otherwise.
    pub fn fill_frame(&mut self, out: &mut [u8]) {
        let (w, _) = self.commit.size();
        let lit = self.lit();
        let face: &[u8] = if w == WIDTH {
            &self.face
        } else {
            &self.face_small
        };
        let mut state = self.noise;
        for (chunk, src) in out.chunks_mut(8).zip(face.chunks(8)) {
            // xorshift64: one draw gives eight pixels their noise.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let r = state.to_le_bytes();
            for ((o, s), n) in chunk.iter_mut().zip(src).zip(r) {
                *o = if lit {
                    (i16::from(*s) + i16::from(n % 7) - 3).clamp(0, 255) as u8
                } else {
                    n & 0x03
                };
            }
        }
        self.noise = state;
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
