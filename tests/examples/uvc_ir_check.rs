//! The simulated IR camera of tests/vm/uvc-ir seen from the host side, through the real uvcvideo
//! driver: proves the simulation end to end without facekey's IR commands. Prints one
//! `CHECK ok|FAIL name: detail` line per check, `MEASURE` and `DEVICE` lines, and
//! `RESULT: N checks, M failed`; exits 0 only when every check passed.
//!
//! What it checks:
//! - facekey's device listing shows a uvcvideo node offering GREY only, judged infrared;
//! - frames captured through facekey's camera path are dark (emitter off);
//! - UVCIOC_CTRL_QUERY on unit 4: GET_INFO/GET_LEN/GET_MIN/GET_MAX/GET_RES/GET_DEF of selector 6,
//!   selector 2 read-only (GET_INFO without SET, SET_CUR refused), selector 1 a writable decoy
//!   that leaves the frames dark;
//! - SET_CUR of selector 6 to its GET_MAX lights the frames (mean well above 60, and two frames
//!   differ: a live sensor, not a still), and facekey's detector finds one face in a lit frame
//!   (with a model folder as second argument);
//! - restoring selector 6 darkens the frames again.
//!
//! Usage: `uvc_ir_check full|controls NODE|auto [MODELS]`: `controls` leaves out every capture
//! (for the configfs gadget, whose frames cannot reach the host; see tests/vm/README.md);
//! `uvc_ir_check emitter on|off NODE` sets selector 6 to its GET_MAX or to zeros.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use facekey_core::camera::{devices, Camera, Settings};
use facekey_core::engine::Engine;
use facekey_core::frame::{FrameSource, PixelFormat};

const UNIT: u8 = 4;
const EMITTER: u8 = 6;
const EMITTER_ON: [u8; 9] = [0x01, 0x03, 0x03, 0, 0, 0, 0, 0, 0];

const SET_CUR: u8 = 0x01;
const GET_CUR: u8 = 0x81;
const GET_MIN: u8 = 0x82;
const GET_MAX: u8 = 0x83;
const GET_RES: u8 = 0x84;
const GET_LEN: u8 = 0x85;
const GET_INFO: u8 = 0x86;
const GET_DEF: u8 = 0x87;

/// `struct uvc_xu_control_query` (linux/uvcvideo.h).
#[repr(C)]
struct XuQuery {
    unit: u8,
    selector: u8,
    query: u8,
    size: u16,
    data: *mut u8,
}

/// `UVCIOC_CTRL_QUERY = _IOWR('u', 0x21, struct uvc_xu_control_query)` on 64-bit Linux.
const UVCIOC_CTRL_QUERY: u64 = 0xC010_7521;

/// One extension-unit query through uvcvideo: `data` is sent (SET_CUR) or filled (GET_*).
fn xu_query(node: &Path, selector: u8, query: u8, data: &mut [u8]) -> io::Result<()> {
    let file = OpenOptions::new().read(true).write(true).open(node)?;
    let mut q = XuQuery {
        unit: UNIT,
        selector,
        query,
        size: data.len() as u16,
        data: data.as_mut_ptr(),
    };
    // SAFETY: UVCIOC_CTRL_QUERY takes a `struct uvc_xu_control_query`, which `XuQuery`
    // reproduces; `data` points at `size` writable bytes that outlive the call.
    unsafe {
        v4l::v4l2::ioctl(
            file.as_raw_fd(),
            UVCIOC_CTRL_QUERY as _,
            &mut q as *mut XuQuery as *mut std::ffi::c_void,
        )
    }
}

fn get(node: &Path, selector: u8, query: u8, len: usize) -> io::Result<Vec<u8>> {
    let mut data = vec![0u8; len];
    xu_query(node, selector, query, &mut data)?;
    Ok(data)
}

struct Checks {
    run: u32,
    failed: u32,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, detail: impl AsRef<str>) -> bool {
        self.run += 1;
        if !ok {
            self.failed += 1;
        }
        println!(
            "CHECK {} {name}: {}",
            if ok { "ok" } else { "FAIL" },
            detail.as_ref()
        );
        ok
    }
}

/// What a few frames looked like.
struct Look {
    mean: f64,
    /// Mean absolute difference between the last two frames.
    change: f64,
    rgb: Option<image::RgbImage>,
    describe: String,
}

/// Open the camera as facekey does, skip the first frames, measure the last two.
fn capture(node: &Path, frames: usize) -> Result<Look, String> {
    let settings = Settings {
        size: Some((640, 480)),
        fps: Some(15),
        format: Some(PixelFormat::Grey),
        ..Settings::default()
    };
    let started = Instant::now();
    let mut camera = Camera::open(node, &settings).map_err(|e| e.to_string())?;
    let mut last: Vec<Vec<u8>> = Vec::new();
    let mut rgb = None;
    let (mut w, mut h, mut stride) = (0usize, 0usize, 0usize);
    for _ in 0..frames {
        match camera.next_frame(Instant::now() + Duration::from_secs(10)) {
            Ok(Some(f)) => {
                (w, h, stride) = (f.width as usize, f.height as usize, f.stride);
                let mut tight = Vec::with_capacity(w * h);
                for row in f.data.chunks(stride).take(h) {
                    tight.extend_from_slice(&row[..w.min(row.len())]);
                }
                rgb = f.to_rgb().ok();
                last.push(tight);
                if last.len() > 2 {
                    last.remove(0);
                }
            }
            other => return Err(format!("no frame: {other:?}")),
        }
    }
    let info = camera.info().clone();
    let describe = format!(
        "{} {}x{} stride {stride}, {frames} frames in {} ms",
        info.format,
        w,
        h,
        started.elapsed().as_millis()
    );
    let newest = last.last().ok_or("no frame")?;
    let mean = newest.iter().map(|&b| f64::from(b)).sum::<f64>() / newest.len().max(1) as f64;
    let change = if last.len() == 2 {
        last[0]
            .iter()
            .zip(&last[1])
            .map(|(a, b)| f64::from(a.abs_diff(*b)))
            .sum::<f64>()
            / newest.len().max(1) as f64
    } else {
        0.0
    };
    Ok(Look {
        mean,
        change,
        rgb,
        describe,
    })
}

fn find_node() -> Option<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = devices::list();
        let found = listed.iter().find_map(|e| {
            e.details
                .as_ref()
                .ok()
                .filter(|d| d.driver == "uvcvideo" && !d.offers.is_empty())
                .map(|_| e.node.clone())
        });
        if found.is_some() || Instant::now() > deadline {
            for entry in &listed {
                match &entry.details {
                    Ok(d) => println!(
                        "DEVICE {}: {} ({}), {} format(s), infrared {}",
                        entry.node.display(),
                        d.card,
                        d.driver,
                        d.offers.len(),
                        d.infrared
                    ),
                    Err(e) => println!("DEVICE {}: {e}", entry.node.display()),
                }
            }
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn main() {
    let mut checks = Checks { run: 0, failed: 0 };
    let args: Vec<String> = std::env::args().collect();
    let frames = match args.get(1).map(String::as_str) {
        Some("full") => true,
        Some("controls") => false,
        Some("emitter") if args.len() == 4 => {
            // Light or darken the emitter by hand (tests/vm/uvc-ir's facekey part, while
            // `facekey ir` does not exist).
            let mut value = if args[2] == "on" {
                EMITTER_ON
            } else {
                [0u8; 9]
            };
            let set = xu_query(Path::new(&args[3]), EMITTER, SET_CUR, &mut value);
            println!("GUEST: emitter {} by hand: {set:?}", args[2]);
            std::process::exit(if set.is_ok() { 0 } else { 1 });
        }
        _ => {
            eprintln!("usage: uvc_ir_check full|controls NODE|auto [MODELS] | emitter on|off NODE");
            std::process::exit(2);
        }
    };
    let arg = args.get(2).cloned().unwrap_or_else(|| "auto".into());
    let models = args.get(3).map(PathBuf::from);
    let node = if arg == "auto" {
        find_node()
    } else {
        Some(PathBuf::from(arg))
    };
    let Some(node) = node else {
        checks.check("uvcvideo node", false, "no capture node of driver uvcvideo");
        finish(&checks);
    };
    let listed = devices::list();
    let details = listed
        .iter()
        .find(|e| e.node == node)
        .and_then(|e| e.details.as_ref().ok());
    checks.check(
        "uvcvideo node, GREY only, infrared",
        details.is_some_and(|d| {
            d.driver == "uvcvideo"
                && d.infrared
                && d.offers
                    .iter()
                    .all(|o| o.format() == Some(PixelFormat::Grey))
        }),
        match details {
            Some(d) => format!(
                "{}: {} ({}), offers {}, infrared {}",
                node.display(),
                d.card,
                d.driver,
                facekey_core::frame::live::offered_text(&d.offers),
                d.infrared
            ),
            None => format!("{} not listed", node.display()),
        },
    );
    let observe = |checks: &mut Checks, name: &str, want_lit: bool| {
        if frames {
            look(checks, &node, name, want_lit)
        } else {
            None
        }
    };

    // 1. Emitter off: dark.
    observe(&mut checks, "emitter off at start: dark", false);

    // 2. The extension unit through uvcvideo.
    let info = get(&node, EMITTER, GET_INFO, 1);
    checks.check(
        "selector 6 GET_INFO: GET and SET",
        info.as_ref().is_ok_and(|i| i[0] & 0x03 == 0x03),
        format!("{info:02x?}"),
    );
    let len = get(&node, EMITTER, GET_LEN, 2);
    checks.check(
        "selector 6 GET_LEN: 9",
        len.as_ref().is_ok_and(|l| l[..] == [9, 0]),
        format!("{len:02x?}"),
    );
    let max = get(&node, EMITTER, GET_MAX, 9);
    checks.check(
        "selector 6 GET_MAX",
        max.as_ref().is_ok_and(|m| m[..] == EMITTER_ON),
        format!("{max:02x?}"),
    );
    for (query, name, want) in [
        (GET_MIN, "GET_MIN", [0u8; 9]),
        (GET_DEF, "GET_DEF", [0u8; 9]),
        (GET_RES, "GET_RES", [1u8; 9]),
        (GET_CUR, "GET_CUR", [0u8; 9]),
    ] {
        let got = get(&node, EMITTER, query, 9);
        checks.check(
            &format!("selector 6 {name}"),
            got.as_ref().is_ok_and(|g| g[..] == want),
            format!("{got:02x?}"),
        );
    }
    let info2 = get(&node, 2, GET_INFO, 1);
    let set2 = xu_query(&node, 2, SET_CUR, &mut [0x55, 0x55]);
    checks.check(
        "selector 2 read-only",
        info2.as_ref().is_ok_and(|i| i[0] & 0x03 == 0x01) && set2.is_err(),
        format!("GET_INFO {info2:02x?}, SET_CUR {set2:?}"),
    );
    let set1 = xu_query(&node, 1, SET_CUR, &mut [0x5a]);
    let cur1 = get(&node, 1, GET_CUR, 1);
    checks.check(
        "selector 1 (decoy) takes a value",
        set1.is_ok() && cur1.as_ref().is_ok_and(|c| c[..] == [0x5a]),
        format!("SET_CUR {set1:?}, GET_CUR {cur1:02x?}"),
    );
    observe(&mut checks, "decoy set: still dark", false);
    let _ = xu_query(&node, 1, SET_CUR, &mut [0]);

    // 3. Emitter on: lit.
    let set = xu_query(&node, EMITTER, SET_CUR, &mut EMITTER_ON.clone());
    let cur = get(&node, EMITTER, GET_CUR, 9);
    checks.check(
        "selector 6 SET_CUR to GET_MAX",
        set.is_ok() && cur.as_ref().is_ok_and(|c| c[..] == EMITTER_ON),
        format!("SET_CUR {set:?}, GET_CUR {cur:02x?}"),
    );
    let lit = observe(&mut checks, "emitter on: lit", true);
    if let (Some(models), Some(rgb)) = (models, lit.and_then(|l| l.rgb)) {
        detect(&mut checks, &models, &rgb);
    }

    // 4. Restored: dark again.
    let set = xu_query(&node, EMITTER, SET_CUR, &mut [0u8; 9]);
    checks.check("selector 6 restored", set.is_ok(), format!("{set:?}"));
    observe(&mut checks, "emitter off again: dark", false);

    finish(&checks);
}

fn look(checks: &mut Checks, node: &Path, name: &str, want_lit: bool) -> Option<Look> {
    match capture(node, 6) {
        Ok(l) => {
            let ok = if want_lit {
                l.mean > 60.0 && l.change > 0.5
            } else {
                l.mean < 10.0
            };
            checks.check(
                name,
                ok,
                format!(
                    "mean {:.1}, frame-to-frame change {:.2} ({})",
                    l.mean, l.change, l.describe
                ),
            );
            Some(l)
        }
        Err(e) => {
            checks.check(name, false, e);
            None
        }
    }
}

fn detect(checks: &mut Checks, models: &Path, rgb: &image::RgbImage) {
    let mut config = facekey_config::Config::default();
    config.models.dir = models.to_path_buf();
    let t = Instant::now();
    let engine = match Engine::load(&config) {
        Ok(e) => e,
        Err(e) => {
            checks.check("detector on a lit frame", false, e.to_string());
            return;
        }
    };
    println!(
        "MEASURE models load in the guest: {} ms",
        t.elapsed().as_millis()
    );
    let t = Instant::now();
    let faces = engine.analyse(rgb);
    println!(
        "MEASURE one lit frame analysed: {} ms",
        t.elapsed().as_millis()
    );
    checks.check(
        "detector finds one face in a lit frame",
        faces.as_ref().is_ok_and(|f| f.len() == 1),
        match &faces {
            Ok(f) => format!("{} face(s)", f.len()),
            Err(e) => e.to_string(),
        },
    );
}

fn finish(checks: &Checks) -> ! {
    println!("RESULT: {} checks, {} failed", checks.run, checks.failed);
    std::process::exit(if checks.failed == 0 { 0 } else { 1 });
}
