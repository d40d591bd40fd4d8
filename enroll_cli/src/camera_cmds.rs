//! `facekey devices`, `facekey test` and `facekey snapshot`: seeing what the camera sees.
//!
//! `test` makes the attempt `facekey auth` makes (`policy::attempt`: the PAM module's policy, rate limit
//! and decision) and only prints what the decision reports for each frame; for a user with no
//! enrolment it shows the frames (brightness, faces) without deciding. `snapshot` saves one frame.
//! Camera bytes are parsed only in a confined child (`confine::run_confined`: files and the camera
//! opened first, then no privileges, no file system, a seccomp allow-list); this process writes the
//! pictures, readable by their owner only. Nothing here may start a thread before the fork.

use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use facekey_config::Config;
use facekey_core::camera::devices::{self, DeviceEntry};
use facekey_core::confine::{self, Confinement};
use facekey_core::decision::{decide, FrameReport, FrameVerdict, DEADLINE_GRACE};
use facekey_core::engine::{AnalysedFace, Engine};
use facekey_core::frame::{self, FrameSource, SourceError};
use facekey_core::liveness::{self, Motion};
use facekey_core::models::ModelFiles;
use facekey_core::policy::{self, SourceChoice, Verdict};
use facekey_core::source;
use facekey_core::store::{Enrolment, Sample, Store, UserName};
use facekey_core::Stats;
use image::{ImageEncoder, Rgb, RgbImage};

use crate::{load_config, resolve_user, CliResult, Failure, UserArg};

#[derive(Args, Debug)]
pub(crate) struct TestArgs {
    #[command(flatten)]
    pub(crate) user: UserArg,
    /// Frame source instead of the configured one (v4l2:DEVICE, file:PATH[,PATH...], dir:PATH).
    #[arg(long, value_name = "SRC")]
    pub(crate) source: Option<String>,
    /// Also write the last frame that held a face as a PNG, with boxes, landmarks and distances.
    #[arg(long, value_name = "FILE.png")]
    pub(crate) snapshot: Option<PathBuf>,
    /// The PAM service whose rules apply (as for `facekey auth`).
    #[arg(long, value_name = "NAME", default_value = "sudo")]
    pub(crate) service: String,
}

#[derive(Args, Debug)]
pub(crate) struct SnapshotArgs {
    /// Frame source instead of the configured one.
    #[arg(long, value_name = "SRC")]
    pub(crate) source: Option<String>,
    /// Where to write the PNG.
    #[arg(short = 'o', long = "output", value_name = "FILE.png")]
    pub(crate) output: PathBuf,
}

/// `facekey devices`: every /dev/videoN, what it offers, which look infrared, which is configured.
pub(crate) fn devices(config: &Config, json: bool) -> CliResult<ExitCode> {
    let entries = devices::list();
    let configured = config
        .camera
        .source
        .strip_prefix("v4l2:")
        .map(PathBuf::from);
    let is_default = |e: &DeviceEntry| {
        configured
            .as_deref()
            .is_some_and(|c| devices::same_node(c, &e.node))
    };
    if json {
        let items: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| device_json(e, is_default(e)))
            .collect();
        println!(
            "{}",
            serde_json::json!({"configured_source": config.camera.source, "devices": items})
        );
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        println!("No camera: this machine has no /dev/video* node.");
    }
    for entry in &entries {
        print!("{}", device_text(entry, is_default(entry)));
    }
    println!(
        "Configured source: {} (camera.source)",
        config.camera.source
    );
    let infrared: Vec<String> = entries
        .iter()
        .filter(|e| e.details.as_ref().is_ok_and(|d| d.infrared))
        .map(|e| e.node.display().to_string())
        .collect();
    if infrared.is_empty() {
        println!("No node looks infrared (infrared nodes offer only grey formats).");
    } else {
        println!("Infrared-looking: {}", infrared.join(", "));
    }
    let default_is_colour = entries
        .iter()
        .find(|e| is_default(e))
        .and_then(|e| e.details.as_ref().ok())
        .is_some_and(|d| !d.infrared);
    if default_is_colour && config.camera.require_ir {
        println!(
            "Note: camera.require_ir is true and the configured camera is not infrared: it will be \
             refused. Point camera.source at an infrared node, or set require_ir = false."
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn device_text(entry: &DeviceEntry, default: bool) -> String {
    let mut out = String::new();
    let node = entry.node.display();
    let mark = if default { "  [configured]" } else { "" };
    match &entry.details {
        Err(reason) => out.push_str(&format!("{node}: {reason}{mark}\n")),
        Ok(d) => {
            let ir = if d.infrared { ", infrared" } else { "" };
            out.push_str(&format!(
                "{node}: {} ({}, {}){ir}{mark}\n",
                d.card, d.driver, d.bus
            ));
            for link in &entry.links {
                out.push_str(&format!("    also {}\n", link.display()));
            }
            if let Some(usb) = &entry.usb {
                out.push_str(&format!("    usb {usb}\n"));
            }
            for offer in &d.offers {
                let sizes: Vec<String> = offer
                    .sizes
                    .iter()
                    .map(|s| match s.max_fps {
                        Some(f) => format!("{}x{}@{f:.0}", s.width, s.height),
                        None => format!("{}x{}", s.width, s.height),
                    })
                    .collect();
                let decodable = if offer.format().is_some() {
                    ""
                } else {
                    " (facekey cannot decode)"
                };
                out.push_str(&format!(
                    "    {:<4} {}{decodable}: {}\n",
                    frame::fourcc_text(offer.fourcc),
                    offer.description,
                    if sizes.is_empty() {
                        "no size list".to_owned()
                    } else {
                        sizes.join(" ")
                    }
                ));
            }
        }
    }
    out
}

fn device_json(entry: &DeviceEntry, default: bool) -> serde_json::Value {
    let mut value = serde_json::json!({
        "node": entry.node,
        "links": entry.links,
        "configured": default,
        "usb": entry.usb.as_ref().map(|u| serde_json::json!({
            "vendor": u.vendor, "product": u.product, "serial": u.serial, "name": u.name,
        })),
    });
    match &entry.details {
        Err(reason) => value["error"] = reason.clone().into(),
        Ok(d) => {
            value["card"] = d.card.clone().into();
            value["driver"] = d.driver.clone().into();
            value["bus"] = d.bus.clone().into();
            value["infrared"] = d.infrared.into();
            value["formats"] = d
                .offers
                .iter()
                .map(|o| {
                    serde_json::json!({
                        "fourcc": frame::fourcc_text(o.fourcc),
                        "description": o.description,
                        "decodable": o.format().is_some(),
                        "sizes": o.sizes.iter().map(|s| serde_json::json!({
                            "width": s.width, "height": s.height, "max_fps": s.max_fps,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
        }
    }
    value
}

/// `facekey test`: the attempt `facekey auth` makes, one line per frame; for a user with no enrolment, the
/// frames without a decision. Either way the frames are parsed in a confined child, which prints the lines.
pub(crate) fn test(config_path: Option<&Path>, args: &TestArgs) -> CliResult<ExitCode> {
    let mut config = load_config(config_path)?;
    let user = resolve_user(&args.user)?;
    if let Some(spec) = &args.source {
        config.camera.source = spec.clone();
    }
    let store = Store::new(&config.storage.faces_dir);
    let enrolment = store
        .load(&user)
        .map_err(|e| Failure::from_error("enrolment store", &e))?
        .filter(|e| !e.samples.is_empty());
    let started = Instant::now();
    let required = config.matching.required_matches.max(1);
    let samples = enrolment
        .as_ref()
        .map(|e| e.samples.clone())
        .unwrap_or_default();
    // The annotated frame comes back from the confined child through this file.
    let kept = match &args.snapshot {
        Some(_) => Some(FrameFile::new()?),
        None => None,
    };
    let observer = frame_printer(
        started,
        required,
        samples,
        kept.as_ref().map(FrameFile::try_clone).transpose()?,
    );
    let stats = match &enrolment {
        Some(_) => {
            let camera = config.camera.clone();
            let open = Box::new(move || open_announced(&camera.source, &camera));
            let verdict = crate::attempt(
                &config,
                &user,
                &args.service,
                SourceChoice::Custom(open),
                Some(Box::new(observer)),
            );
            println!("Decision: {verdict}");
            let stats = match &verdict {
                Verdict::Decided { outcome, .. } => outcome.stats().cloned(),
                _ => None,
            };
            (stats, crate::exit_code(&verdict))
        }
        None => {
            println!("{user} has no enrolled face: showing what the camera sees, without deciding");
            (
                Some(frames_without_deciding(&config, &user, started, observer)?),
                ExitCode::from(2),
            )
        }
    };
    let (stats, code) = stats;
    if let Some(stats) = stats {
        let first = stats
            .first_frame
            .map_or("none".to_owned(), |d| format!("{} ms", d.as_millis()));
        println!(
            "Frames: {} read, {} dark, {} undecodable, {} unchanged faces refused; first frame after {first}",
            stats.frames, stats.dark_frames, stats.bad_frames, stats.still_frames
        );
    }
    if let (Some(path), Some(kept)) = (&args.snapshot, &kept) {
        match kept.take()? {
            Some((annotated, faces)) => {
                write_png(path, &annotated)?;
                println!(
                    "Annotated frame ({faces} face(s)) written to {}",
                    path.display()
                );
            }
            None => println!("No frame held a face: no snapshot written"),
        }
    }
    Ok(code)
}

/// Open `spec` with the `[camera]` settings and say what it is (`Source: ...` and the camera's notes).
fn open_announced(
    spec: &str,
    camera: &facekey_config::Camera,
) -> Result<Box<dyn FrameSource>, SourceError> {
    let source = source::open_source_with(spec, camera)?;
    println!("Source: {}", source.describe());
    if let Some(info) = source.camera() {
        for note in &info.notes {
            println!("  note: {note}");
        }
    }
    Ok(source)
}

/// The observer of `facekey test`: a line per frame and, with `keep`, the last frame that held a face,
/// annotated, written to `keep`. It runs where the frames are parsed (the confined child).
fn frame_printer(
    started: Instant,
    required: u32,
    samples: Vec<Sample>,
    keep: Option<FrameFile>,
) -> impl FnMut(&FrameReport<'_>) + Send + 'static {
    let mut last_at: Option<Duration> = None;
    move |r: &FrameReport<'_>| {
        let at = started.elapsed();
        println!("{}", frame_line(r, at, last_at, required));
        last_at = Some(at);
        if let (Some(keep), Some(image), false) = (&keep, r.image, r.faces.is_empty()) {
            let annotated = annotate(image, r.faces, r.verdict, &samples);
            // A frame that cannot be handed over is reported by the parent as a short file.
            let _ = keep.put(&annotated, r.faces.len() as u32);
        }
    }
}

/// Frames of a user with no enrolment, decided against none (every face "no match"), in a confined child: the
/// model files are read and the source opened before it confines itself.
fn frames_without_deciding(
    config: &Config,
    user: &UserName,
    started: Instant,
    mut observer: impl FnMut(&FrameReport<'_>),
) -> CliResult<Stats> {
    let deadline = policy::deadline_after(started, config.auth.timeout);
    let ran = confine::run_confined(
        deadline + DEADLINE_GRACE,
        &Confinement::default(),
        || {
            (
                ModelFiles::read(config),
                open_announced(&config.camera.source, &config.camera),
            )
        },
        |(files, source)| -> Result<Stats, Failure> {
            let mut source = source.map_err(|e| Failure::from_error("frame source", &e))?;
            let hint = source.frame_size_hint();
            let engine = files
                .and_then(|files| Engine::start_from(files, config, move || hint))
                .map_err(|e| Failure::from_error("models", &e))?;
            if let Err(e) = liveness::check_infrared(&config.camera, source.as_ref()) {
                println!("  warning: {e}");
            }
            let empty = Enrolment::new(user, engine.embedder_id().clone());
            let outcome = decide(
                &engine,
                &empty,
                config,
                source.as_mut(),
                started,
                deadline,
                &mut observer,
            );
            outcome
                .stats()
                .cloned()
                .ok_or_else(|| Failure::new(outcome.to_string()))
        },
    )
    .map_err(|e| Failure::from_error("confined frame reader", &e))?;
    ran.value
}

/// One frame: when, how fast, how bright, what was found, what the decision made of it.
fn frame_line(r: &FrameReport<'_>, at: Duration, last: Option<Duration>, required: u32) -> String {
    let rate = last
        .map(|l| at.saturating_sub(l).as_secs_f64())
        .filter(|s| *s > 0.0)
        .map_or("     -".to_owned(), |s| format!("{:5.1}", 1.0 / s));
    let light = r
        .exposure
        .map_or("brightness   -  dark   -".to_owned(), |e| {
            format!(
                "brightness {:3.0}  dark {:3.0}%",
                e.mean,
                e.dark_fraction * 100.0
            )
        });
    let best = r
        .best_distance
        .map_or("    -".to_owned(), |d| format!("{d:.3}"));
    let change = match r.motion {
        Some(Motion::Changed(c) | Motion::Still(c)) => format!("{c:5.2}"),
        _ => "    -".to_owned(),
    };
    let verdict = match r.verdict {
        FrameVerdict::Undecodable => "undecodable, skipped".to_owned(),
        FrameVerdict::Dark => "dark, skipped".to_owned(),
        FrameVerdict::NoFace => "no face".to_owned(),
        FrameVerdict::NoMatch => "no match".to_owned(),
        FrameVerdict::Reference => "match, reference for the change check".to_owned(),
        FrameVerdict::Still => "match refused: face unchanged".to_owned(),
        FrameVerdict::Match { count } => format!("match {count}/{required}"),
    };
    format!(
        "frame {:3}  +{:5} ms  {rate} fps  age {:3} ms  {light}  faces {}  best {best}  change {change}  {verdict}",
        r.stats.frames,
        at.as_millis(),
        r.frame.timestamp.elapsed().as_millis(),
        r.faces.len(),
    )
}

/// What `facekey snapshot`'s confined child says about the frame it chose (the pixels come through a
/// [`FrameFile`]).
#[derive(serde::Serialize, serde::Deserialize)]
struct Chosen {
    format: String,
    origin: String,
    mean: f32,
    dark_fraction: f32,
    /// Dark frames read, the chosen one included when every frame was dark.
    dark: u32,
    /// The chosen frame is dark too: no frame was lit.
    all_dark: bool,
}

/// `facekey snapshot`: the first frame that is not dark (or the last dark one), as a PNG. The frames are decoded
/// in a confined child (the source is opened before it confines itself); this process writes the PNG.
pub(crate) fn snapshot(config_path: Option<&Path>, args: &SnapshotArgs) -> CliResult<ExitCode> {
    let config = load_config(config_path)?;
    let spec = args
        .source
        .clone()
        .unwrap_or_else(|| config.camera.source.clone());
    let started = Instant::now();
    let deadline = policy::deadline_after(started, config.auth.timeout);
    let file = FrameFile::new()?;
    let out = file.try_clone()?;
    let ran = confine::run_confined(
        deadline + DEADLINE_GRACE,
        &Confinement::default(),
        || open_announced(&spec, &config.camera),
        |source| -> Result<Chosen, Failure> {
            let mut source = source.map_err(|e| Failure::from_error("frame source", &e))?;
            let (mut dark, mut undecodable) = (0u32, 0u32);
            let mut fallback = None;
            let dark_threshold = facekey_core::camera::emitter::dark_threshold_for(
                config.camera.dark_threshold,
                source.camera(),
            );
            let chosen = loop {
                let frame = match source.next_frame(deadline) {
                    Ok(Some(f)) => f,
                    Ok(None) => break None,
                    Err(e) => return Err(Failure::from_error("frame source", &e)),
                };
                let Ok(image) = frame.to_rgb() else {
                    undecodable += 1;
                    continue;
                };
                let exposure = liveness::measure(&image);
                if liveness::is_dark(&exposure, dark_threshold) {
                    dark += 1;
                    fallback = Some((frame, image, exposure));
                    continue;
                }
                break Some((frame, image, exposure));
            };
            let all_dark = chosen.is_none();
            let Some((frame, image, exposure)) = chosen.or(fallback) else {
                return Err(Failure::new(format!(
                    "no frame before the deadline ({undecodable} undecodable)"
                )));
            };
            out.put(&image, 0)
                .map_err(|e| Failure::from_error("handing the frame over", &e))?;
            Ok(Chosen {
                format: frame.format.to_string(),
                origin: frame.origin.clone(),
                mean: exposure.mean,
                dark_fraction: exposure.dark_fraction,
                dark,
                all_dark,
            })
        },
    )
    .map_err(|e| Failure::from_error("confined frame reader", &e))?;
    let chosen = ran.value?;
    let Some((image, _)) = file.take()? else {
        return Err(Failure::new(
            "the confined frame reader handed over no frame",
        ));
    };
    write_png(&args.output, &image)?;
    println!(
        "Saved {}x{} {} frame ({}; brightness {:.0}, {:.0}% dark) to {} after {} ms",
        image.width(),
        image.height(),
        chosen.format,
        chosen.origin,
        chosen.mean,
        chosen.dark_fraction * 100.0,
        args.output.display(),
        started.elapsed().as_millis()
    );
    if chosen.all_dark {
        println!(
            "Warning: every frame ({}) was dark: on an infrared camera the emitter may be off \
             (see docs/camera.md)",
            chosen.dark
        );
    } else if chosen.dark > 0 {
        println!("Skipped {} dark frame(s) first", chosen.dark);
    }
    Ok(ExitCode::SUCCESS)
}

/// A frame handed from a confined child to this process through an unnamed temporary file opened before the
/// fork: the child, which can no longer open files, writes to the inherited descriptor; this process reads it
/// once the child has ended. A pipe would fill up (a frame is larger than its buffer) while the parent waits for
/// the child's answer.
pub(crate) struct FrameFile(std::fs::File);

/// Width, height and a count (faces), each a little-endian u32, before the RGB bytes.
const FRAME_HEADER: usize = 12;

impl FrameFile {
    pub(crate) fn new() -> CliResult<FrameFile> {
        tempfile::tempfile()
            .map(FrameFile)
            .map_err(|e| Failure::from_error("temporary file for the frame", &e))
    }

    /// A second handle on the same file (the child's).
    pub(crate) fn try_clone(&self) -> CliResult<FrameFile> {
        self.0
            .try_clone()
            .map(FrameFile)
            .map_err(|e| Failure::from_error("temporary file for the frame", &e))
    }

    /// Replace the frame held (only lseek and write: what the confined child may call).
    fn put(&self, image: &RgbImage, count: u32) -> std::io::Result<()> {
        let mut file = &self.0;
        file.seek(SeekFrom::Start(0))?;
        let mut header = [0u8; FRAME_HEADER];
        header[0..4].copy_from_slice(&image.width().to_le_bytes());
        header[4..8].copy_from_slice(&image.height().to_le_bytes());
        header[8..12].copy_from_slice(&count.to_le_bytes());
        file.write_all(&header)?;
        file.write_all(image.as_raw())
    }

    /// The frame last put and its count; `None` when none was.
    fn take(&self) -> CliResult<Option<(RgbImage, u32)>> {
        let fail =
            |e: &dyn std::error::Error| Failure::from_error("frame from the confined child", e);
        let mut file = &self.0;
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(|e| fail(&e))?;
        if bytes.is_empty() {
            return Ok(None);
        }
        let word = |i: usize| {
            bytes
                .get(i..i + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let (Some(width), Some(height), Some(count)) = (word(0), word(4), word(8)) else {
            return Err(Failure::new(
                "the confined child handed over a cut-off frame",
            ));
        };
        let size = (width as usize)
            .checked_mul(height as usize)
            .and_then(|n| n.checked_mul(3))
            .filter(|n| FRAME_HEADER + n <= bytes.len())
            .ok_or_else(|| Failure::new("the confined child handed over a cut-off frame"))?;
        bytes.truncate(FRAME_HEADER + size);
        bytes.drain(..FRAME_HEADER);
        let image = RgbImage::from_raw(width, height, bytes)
            .ok_or_else(|| Failure::new("the confined child handed over a cut-off frame"))?;
        Ok(Some((image, count)))
    }
}

/// Write a PNG readable by its owner only: it may hold a face. The PNG goes to a new file beside `path` (created
/// 0600, never an existing one) that is then renamed over `path`: a symlink at `path` is replaced, never followed,
/// so root running `snapshot -o /tmp/x.png` cannot be made to overwrite the file a planted link points at, and a
/// failed write leaves what was at `path` as it was.
fn write_png(path: &Path, image: &RgbImage) -> CliResult<()> {
    let fail = |e: &dyn std::error::Error| Failure::from_error(&path.display().to_string(), e);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".facekey-snapshot-")
        .suffix(".png")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(|e| fail(&e))?;
    let mut out = BufWriter::new(file.as_file_mut());
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| fail(&e))?;
    out.flush().map_err(|e| fail(&e))?;
    drop(out);
    file.persist(path).map_err(|e| fail(&e.error))?;
    Ok(())
}

const GREEN: Rgb<u8> = Rgb([40, 220, 60]);
const RED: Rgb<u8> = Rgb([230, 40, 40]);
const AMBER: Rgb<u8> = Rgb([240, 180, 20]);
const CYAN: Rgb<u8> = Rgb([30, 200, 230]);

/// The frame with each face's box (green: closer than the threshold counted, amber: a match that
/// did not count, red: no match or no enrolment), its five landmarks and its distance.
fn annotate(
    image: &RgbImage,
    faces: &[AnalysedFace],
    verdict: FrameVerdict,
    samples: &[Sample],
) -> RgbImage {
    let mut image = image.clone();
    let scale = (image.height() / 240).max(1);
    for face in faces {
        let distance = samples
            .iter()
            .map(|s| face.embedding.distance(&s.embedding))
            .reduce(f32::min);
        let best = faces
            .iter()
            .filter_map(|f| {
                samples
                    .iter()
                    .map(|s| f.embedding.distance(&s.embedding))
                    .reduce(f32::min)
            })
            .reduce(f32::min);
        let colour = match (verdict, distance == best && distance.is_some()) {
            (FrameVerdict::Match { .. }, true) => GREEN,
            (FrameVerdict::Reference | FrameVerdict::Still, true) => AMBER,
            _ => RED,
        };
        let [x, y, w, h] = face.face.bbox;
        draw_rect(&mut image, x, y, w, h, scale, colour);
        for [lx, ly] in face.face.landmarks {
            fill(
                &mut image,
                lx as i64 - 1,
                ly as i64 - 1,
                3 * scale,
                3 * scale,
                CYAN,
            );
        }
        if let Some(d) = distance {
            // Above the box, else below it, else inside its top edge.
            let glyph_h = 5 * 2 * scale as i64;
            let (top, bottom) = (y as i64, (y + h) as i64);
            let ty = if top > glyph_h + 4 {
                top - glyph_h - 4
            } else if bottom + glyph_h + 4 < image.height() as i64 {
                bottom + 4
            } else {
                top.max(0) + 4 * scale as i64
            };
            let tx = (x as i64).max(0) + 2 * scale as i64;
            draw_text(&mut image, tx, ty, &format!("{d:.3}"), 2 * scale, colour);
        }
    }
    image
}

fn fill(image: &mut RgbImage, x: i64, y: i64, w: u32, h: u32, colour: Rgb<u8>) {
    for yy in y.max(0)..(y + h as i64).min(image.height() as i64) {
        for xx in x.max(0)..(x + w as i64).min(image.width() as i64) {
            image.put_pixel(xx as u32, yy as u32, colour);
        }
    }
}

fn draw_rect(image: &mut RgbImage, x: f32, y: f32, w: f32, h: f32, t: u32, colour: Rgb<u8>) {
    let (x, y, w, h) = (x as i64, y as i64, w.max(1.0) as u32, h.max(1.0) as u32);
    let t2 = 2 * t;
    fill(image, x, y, w, t2, colour);
    fill(image, x, y + h as i64 - t2 as i64, w, t2, colour);
    fill(image, x, y, t2, h, colour);
    fill(image, x + w as i64 - t2 as i64, y, t2, h, colour);
}

/// Digits and a point in a 3x5 pixel font: enough for distances, with no font dependency.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        _ => return None,
    })
}

fn draw_text(image: &mut RgbImage, x: i64, y: i64, text: &str, scale: u32, colour: Rgb<u8>) {
    let s = scale as i64;
    for (i, c) in text.chars().enumerate() {
        let Some(rows) = glyph(c) else { continue };
        let gx = x + i as i64 * 4 * s;
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..3 {
                if bits & (0b100 >> col) != 0 {
                    fill(
                        image,
                        gx + col * s,
                        y + row as i64 * s,
                        scale,
                        scale,
                        colour,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_character_of_a_distance_has_a_glyph() {
        for c in "0123456789.".chars() {
            assert!(glyph(c).is_some(), "{c}");
        }
    }

    #[test]
    fn drawing_past_the_edges_is_clipped_not_a_panic() {
        let mut image = RgbImage::new(20, 10);
        draw_text(&mut image, 15, 8, "0.123", 2, RED);
        draw_rect(&mut image, -5.0, -5.0, 40.0, 40.0, 1, GREEN);
        fill(&mut image, -3, -3, 2, 2, CYAN);
        draw_rect(&mut image, 2.0, 2.0, 10.0, 6.0, 1, GREEN);
        assert_eq!(image.get_pixel(2, 2).0, GREEN.0);
        assert_eq!(image.get_pixel(11, 7).0, GREEN.0);
        assert_eq!(image.get_pixel(6, 5).0, [0, 0, 0]);
    }
}
