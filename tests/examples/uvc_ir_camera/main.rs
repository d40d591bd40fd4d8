//! A simulated IR camera whose emitter must be switched on through a UVC extension unit, for
//! tests/vm/uvc-ir: run inside its qemu guest, it is a USB camera that the same kernel's uvcvideo
//! drives, so facekey talks to it through the real UVC host driver, not a mock.
//!
//! The contract (tests/vm/README.md repeats it; `facekey ir discover` is written against it):
//! - USB ids 1d6b:0102; one format, GREY (Y800, uncompressed, 8 bits per pixel), 640x480 and
//!   320x240, 30 or 15 frames per second (15 by default);
//! - extension unit 4 with three controls: selector 1 (1 byte, GET/SET, changes nothing: a
//!   decoy), selector 2 (2 bytes, GET only: GET_INFO reports no SET), selector 6 (9 bytes,
//!   GET/SET; GET_MIN and GET_DEF all zero, GET_MAX [1,3,3,0,0,0,0,0,0], GET_RES all ones);
//! - the emitter is lit exactly while selector 6 holds its GET_MAX: frames then show the face
//!   prepared from the test data with +-3 levels of random noise per frame; otherwise they are
//!   black (0..3). Lit frames are steady: no lit/dark alternation.
//!
//! Two ways to carry it (the camera's behaviour, `device.rs`, is the same):
//! - `gadget`: the kernel's UVC gadget function (usb_f_uvc, configured in configfs) with this
//!   program as its userspace side; the controls work, frames do not flow (gadget.rs says why);
//! - `usbip`: this program as the whole USB device behind vhci_hcd; controls and frames work.
//!
//! Usage:
//! - `uvc_ir_camera prepare PHOTO OUT.raw`: on the build host, the photo as 640x480 GREY bytes
//!   (fitted, centred, the margins at the photo's mean level);
//! - `uvc_ir_camera gadget FACE.raw [--interfaces CONTROL STREAMING] [--usbip]`: after the
//!   gadget is configured and bound; `--usbip` when it is bound to usbip-vudc, to plug it into
//!   vhci_hcd;
//! - `uvc_ir_camera usbip FACE.raw`: needs vhci_hcd and a loopback interface.
//!
//! Serves until killed. Lines start with `GADGET:` so the test script can show them.

mod device;
mod gadget;
mod usbip;

use std::io;
use std::path::Path;

use device::{Device, HEIGHT, WIDTH};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("prepare") if args.len() == 4 => prepare(Path::new(&args[2]), Path::new(&args[3])),
        Some("gadget") if args.len() >= 3 => run_gadget(Path::new(&args[2]), &args[3..]),
        Some("usbip") if args.len() == 3 => read_face(Path::new(&args[2]))
            .map(|face| Device::new(face, (0, 1), usbip::PACKET as u32))
            .and_then(usbip::UsbIp::plug)
            .and_then(|mut d| d.serve()),
        _ => {
            eprintln!(
                "usage: uvc_ir_camera prepare PHOTO OUT.raw | gadget FACE.raw [--interfaces C S] [--usbip] | usbip FACE.raw"
            );
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

fn read_face(path: &Path) -> io::Result<Vec<u8>> {
    let face = std::fs::read(path)?;
    if face.len() != (WIDTH * HEIGHT) as usize {
        return Err(io::Error::other(format!(
            "{}: {} bytes, {} expected (640x480 GREY)",
            path.display(),
            face.len(),
            WIDTH * HEIGHT
        )));
    }
    Ok(face)
}

fn run_gadget(face: &Path, rest: &[String]) -> io::Result<()> {
    let face = read_face(face)?;
    let mut interfaces = (0u8, 1u8);
    let mut usbip = false;
    let mut i = 0;
    while i < rest.len() {
        match rest[i].as_str() {
            "--interfaces" if i + 2 < rest.len() => {
                interfaces = (parse(&rest[i + 1])?, parse(&rest[i + 2])?);
                i += 3;
            }
            "--usbip" => {
                usbip = true;
                i += 1;
            }
            other => return Err(io::Error::other(format!("unknown argument {other}"))),
        }
    }
    // The payload size the gadget's endpoint carries (streaming_maxpacket in configfs).
    let device = Device::new(face, interfaces, 3072);
    gadget::Gadget::open(device, usbip)?.serve()
}

fn parse<T: std::str::FromStr>(s: &str) -> io::Result<T> {
    s.parse()
        .map_err(|_| io::Error::other(format!("not a number: {s}")))
}
