//! Face-free frames, for counting false detections: tiles of the test photos away from every annotated face
//! (in colour and grey), and bare backgrounds as `paste` makes them.

use std::path::Path;

use anyhow::{Context, Result};
use image::{imageops, RgbImage};

use crate::paste::{self, Light};

/// Frame size of every face-free frame.
const W: u32 = 640;
const H: u32 = 480;
/// Tiles kept per photo, at most.
const TILES_PER_PHOTO: usize = 6;
/// Bare backgrounds, grey and in colour, each.
const BACKGROUNDS: u32 = 20;

/// Annotated face boxes (left, top, width, height) of one photo, from dlib's imglab XML files.
fn boxes(photos: &Path, file: &str) -> Result<Vec<[f32; 4]>> {
    let mut out = Vec::new();
    for xml in ["training.xml", "testing.xml"] {
        let path = photos.join(xml);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        // <image file='NAME' ...> <box top='..' left='..' width='..' height='..'/> ... </image>
        let mut in_image = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with("<image ") {
                in_image = attr(line, "file").as_deref() == Some(file);
            } else if line.starts_with("</image>") {
                in_image = false;
            } else if in_image && line.starts_with("<box ") {
                let n = |k| attr(line, k).and_then(|v| v.parse::<f32>().ok());
                if let (Some(t), Some(l), Some(w), Some(h)) =
                    (n("top"), n("left"), n("width"), n("height"))
                {
                    out.push([l, t, w, h]);
                }
            }
        }
    }
    Ok(out)
}

/// The value of `key='...'` in an XML tag.
fn attr(tag: &str, key: &str) -> Option<String> {
    let start = tag.find(&format!("{key}='"))? + key.len() + 2;
    let end = tag[start..].find('\'')? + start;
    Some(tag[start..end].to_string())
}

fn overlaps(a: [f32; 4], b: [f32; 4]) -> bool {
    a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3]
}

/// Write the face-free frames into `out` (flat, PNG); returns how many.
pub fn write(photos: &Path, out: &Path, seed: u64) -> Result<usize> {
    std::fs::create_dir_all(out)?;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut n = 0;
    let mut names: Vec<_> = std::fs::read_dir(photos)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".jpg"))
        .collect();
    names.sort();
    for name in names {
        let photo = image::open(photos.join(&name))
            .with_context(|| name.clone())?
            .to_rgb8();
        let (pw, ph) = photo.dimensions();
        // Each face box grown by 60% on every side, to keep hair, ears and chin out of the tiles.
        // Only photos whose faces are annotated, and dogs.jpg, which has none: any other photo may hold a face.
        let annotated = boxes(photos, &name)?;
        if annotated.is_empty() && name != "dogs.jpg" {
            continue;
        }
        let keep_out: Vec<[f32; 4]> = annotated
            .into_iter()
            .map(|[l, t, w, h]| [l - 0.6 * w, t - 0.6 * h, 2.2 * w, 2.2 * h])
            .collect();
        let mut kept = 0;
        for _ in 0..200 {
            if kept == TILES_PER_PHOTO {
                break;
            }
            let max_w = pw.min(ph * 4 / 3);
            if max_w < 160 {
                break;
            }
            let tw = rng.u32(160..=max_w);
            let th = tw * 3 / 4;
            let x = rng.u32(0..=pw - tw);
            let y = rng.u32(0..=ph - th);
            let tile = [x as f32, y as f32, tw as f32, th as f32];
            if keep_out.iter().any(|b| overlaps(*b, tile)) {
                continue;
            }
            let crop = imageops::crop_imm(&photo, x, y, tw, th).to_image();
            let mut frame = imageops::resize(&crop, W, H, imageops::FilterType::Triangle);
            let stem = name.trim_end_matches(".jpg");
            frame.save(out.join(format!("tile-{stem}-{kept}.png")))?;
            paste::relight(&mut frame, Light::Grey, &mut rng);
            frame.save(out.join(format!("tile-{stem}-{kept}-grey.png")))?;
            kept += 1;
            n += 2;
        }
    }
    for i in 0..BACKGROUNDS {
        for grey in [true, false] {
            let frame: RgbImage = paste::background(W, H, grey, &mut rng);
            let kind = if grey { "grey" } else { "colour" };
            frame.save(out.join(format!("background-{kind}-{i:02}.png")))?;
            n += 1;
        }
    }
    Ok(n)
}
