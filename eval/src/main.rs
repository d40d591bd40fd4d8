//! facekey-eval: accuracy figures for facekey on labelled face sets. See docs/accuracy.md.
//!
//!   facekey-eval frames SET --out DIR [--size 640x480] [--light normal,grey,dim,bright,side]
//!   facekey-eval negatives PHOTOS --out DIR
//!   facekey-eval embed FRAMES --embedder NAME [--installed-dir DIR] --out FILE.jsonl
//!   facekey-eval report --name NAME FILE.jsonl [--probe FILE.jsonl] [--rects rects.csv] [--negatives FILE.jsonl]
//!   facekey-eval decide FRAMES --embedder NAME [--installed-dir DIR] [--probe FRAMES]   (the real decision, attempt by attempt)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use facekey_config::MatchRule;
use facekey_core::decision::{decide, Outcome};
use facekey_core::frame::{Frame, FrameSource, SourceError};
use facekey_core::store::{Enrolment, UserName};
use facekey_core::Engine;
use facekey_eval::analyse::{self, Cached};
use facekey_eval::paste::{self, Light};
use facekey_eval::protocol::{self, Analysed, Gallery, Protocol};
use facekey_eval::report::{self, Inputs};
use facekey_eval::set::LabelledSet;
use facekey_eval::stats::Rate;
use facekey_eval::{negatives, records};

#[derive(Parser)]
#[command(
    name = "facekey-eval",
    about = "facekey's accuracy on labelled face sets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which embedder to evaluate: a name of facekey's catalogue ("int8", "fp32", or one installed under
/// `--installed-dir` with `facekey model install` or `import-dlib`).
#[derive(clap::Args, Clone)]
struct EmbedderArgs {
    #[arg(long, default_value = "int8")]
    embedder: String,
    /// The installed models' directory (with its manifest.toml) to find `--embedder` in.
    #[arg(long)]
    installed_dir: Option<PathBuf>,
}

impl EmbedderArgs {
    fn config(&self) -> facekey_config::Config {
        let mut config = analyse::config(&analyse::repo_models(), &self.embedder);
        if let Some(dir) = &self.installed_dir {
            config.models.installed_dir = dir.clone();
        }
        config
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Rule {
    Frames,
    Consecutive,
    SameSample,
    MeanOfBest,
}

impl From<Rule> for MatchRule {
    fn from(r: Rule) -> Self {
        match r {
            Rule::Frames => MatchRule::Frames,
            Rule::Consecutive => MatchRule::Consecutive,
            Rule::SameSample => MatchRule::SameSample,
            Rule::MeanOfBest => MatchRule::MeanOfBest,
        }
    }
}

#[derive(clap::Args, Clone)]
struct ProtocolArgs {
    /// Images each identity enrols.
    #[arg(long, default_value_t = 3)]
    enrol: usize,
    /// Enrolment draws per identity (rotations of the enrolled images); attempts of different draws are
    /// correlated.
    #[arg(long, default_value_t = 1)]
    draws: usize,
    /// Frames per attempt, at most.
    #[arg(long, default_value_t = 10)]
    frames: usize,
    #[arg(long, default_value_t = 13)]
    seed: u64,
}

impl ProtocolArgs {
    fn protocol(&self) -> Protocol {
        Protocol {
            enrol: self.enrol,
            draws: self.draws,
            frames: self.frames,
            seed: self.seed,
        }
    }
}

#[derive(clap::Args, Clone)]
struct RuleArgs {
    /// The rule's threshold (default: the shipped one).
    #[arg(long)]
    threshold: Option<f32>,
    /// The rule (default: the shipped one).
    #[arg(long, value_enum)]
    rule: Option<Rule>,
    /// Frames the rule needs (default: the shipped number).
    #[arg(long)]
    required: Option<u32>,
}

#[derive(Subcommand)]
enum Command {
    /// Paste every image of a labelled set (`SET/<identity>/<image>`) into camera-sized frames, under each light:
    /// DIR/<light>/<identity>/<image>.png and DIR/<light>/rects.csv (where each crop went).
    Frames {
        set: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Frame size, WIDTHxHEIGHT.
        #[arg(long, default_value = "640x480")]
        size: String,
        #[arg(long, value_enum, value_delimiter = ',', default_value = "normal")]
        light: Vec<Light>,
        #[arg(long, default_value_t = 20240606)]
        seed: u64,
    },
    /// Face-free frames: tiles of the photos away from every annotated face, and bare backgrounds.
    Negatives {
        /// The photos folder with dlib's training.xml and testing.xml.
        photos: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 20240606)]
        seed: u64,
    },
    /// Analyse every frame of a folder (`<identity>/<image>`, or flat with --flat) with facekey's engine:
    /// JSON lines of faces and embeddings.
    Embed {
        frames: PathBuf,
        #[command(flatten)]
        embedder: EmbedderArgs,
        #[arg(long)]
        out: PathBuf,
        /// Every image of the folder, not grouped by identity (face-free frames).
        #[arg(long)]
        flat: bool,
        /// The detector's score threshold (default: the shipped one).
        #[arg(long)]
        score_threshold: Option<f32>,
        /// Frames taller than this are scaled down before detection (default: the shipped one).
        #[arg(long)]
        max_height: Option<u32>,
        /// No second look at unsure faces (`[detection] second_look = false`).
        #[arg(long)]
        no_second_look: bool,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Detection, pair and per-attempt figures from `embed`'s output (or the dlib peer's).
    Report {
        embeddings: PathBuf,
        #[arg(long)]
        name: String,
        /// Probe with these frames (the same identities and names under another light) instead.
        #[arg(long)]
        probe: Option<PathBuf>,
        #[arg(long)]
        rects: Option<PathBuf>,
        #[arg(long)]
        negatives: Option<PathBuf>,
        #[command(flatten)]
        protocol: ProtocolArgs,
        #[command(flatten)]
        rule: RuleArgs,
        /// Write the pair and per-attempt curves (threshold, FAR, FRR) as CSV here.
        #[arg(long)]
        curves: Option<PathBuf>,
    },
    /// Every attempt of the protocol through facekey's own decision (`decision::decide`, liveness off), on the
    /// frames themselves; prints the accepted attempts and checks them against the per-attempt scores.
    Decide {
        #[arg(value_name = "FRAMES")]
        dir: PathBuf,
        #[command(flatten)]
        embedder: EmbedderArgs,
        /// Probe with these frames (same identities and names) instead.
        #[arg(long)]
        probe: Option<PathBuf>,
        #[command(flatten)]
        protocol: ProtocolArgs,
        #[command(flatten)]
        rule: RuleArgs,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Frames {
            set,
            out,
            size,
            light,
            seed,
        } => frames(&set, &out, &size, &light, seed),
        Command::Negatives { photos, out, seed } => {
            let n = negatives::write(&photos, &out, seed)?;
            eprintln!("wrote {n} face-free frames to {}", out.display());
            Ok(())
        }
        Command::Embed {
            frames,
            embedder,
            out,
            flat,
            score_threshold,
            max_height,
            no_second_look,
            threads,
        } => {
            let mut config = embedder.config();
            if let Some(s) = score_threshold {
                config.detection.score_threshold = s;
            }
            if let Some(h) = max_height {
                config.detection.max_height = h;
            }
            config.detection.second_look = !no_second_look;
            let engine = Engine::load(&config).context("models")?;
            let files = if flat {
                let mut v: Vec<PathBuf> = std::fs::read_dir(&frames)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.is_file() && p.extension().is_some_and(|e| e == "png" || e == "jpg")
                    })
                    .collect();
                v.sort();
                v
            } else {
                analyse::frames_in(&frames)?
            };
            let started = Instant::now();
            let recs = analyse::analyse_files(&engine, &files, threads)?;
            records::write(&out, &recs)?;
            eprintln!(
                "analysed {} images in {:.1} s -> {}",
                recs.len(),
                started.elapsed().as_secs_f64(),
                out.display()
            );
            Ok(())
        }
        Command::Report {
            embeddings,
            name,
            probe,
            rects,
            negatives,
            protocol,
            rule,
            curves,
        } => {
            let recs = records::read(&embeddings)?;
            let probe = probe.as_deref().map(records::read).transpose()?;
            let rects = rects.as_deref().map(report::read_rects).transpose()?;
            let negatives = negatives.as_deref().map(records::read).transpose()?;
            let defaults = facekey_config::Matching::default();
            let r = report::report(&Inputs {
                name: &name,
                records: &recs,
                probe: probe.as_deref(),
                rects: rects.as_ref(),
                negatives: negatives.as_deref(),
                protocol: protocol.protocol(),
                threshold: rule.threshold.unwrap_or(facekey_config::DEFAULT_THRESHOLD),
                rule: rule.rule.map(Into::into).unwrap_or(defaults.rule),
                required: rule.required.unwrap_or(defaults.required_matches),
            });
            print!("{}", r.text);
            if let Some(dir) = curves {
                std::fs::create_dir_all(&dir)?;
                std::fs::write(
                    dir.join(format!("{name}-pairs.csv")),
                    report::curve_csv(&r.pairs),
                )?;
                for ((rule, k), s) in &r.attempts {
                    std::fs::write(
                        dir.join(format!("{name}-attempts-{}-{k}.csv", rule.name())),
                        report::curve_csv(s),
                    )?;
                }
            }
            Ok(())
        }
        Command::Decide {
            dir,
            embedder,
            probe,
            protocol,
            rule,
            threads,
        } => decide_all(
            &dir,
            &embedder,
            probe.as_deref(),
            &protocol.protocol(),
            &rule,
            threads,
        ),
    }
}

fn frames(set: &Path, out: &Path, size: &str, lights: &[Light], seed: u64) -> Result<()> {
    let (w, h) = size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|&(w, h)| (64..=8192).contains(&w) && (64..=8192).contains(&h))
        .with_context(|| format!("--size {size}: expected WIDTHxHEIGHT, 64 to 8192 each"))?;
    let set = LabelledSet::read(set)?;
    for &light in lights {
        let dir = out.join(light.name());
        let mut csv = String::from("identity,name,x,y,w,h\n");
        for identity in &set.identities {
            std::fs::create_dir_all(dir.join(&identity.name))?;
            for image in &identity.images {
                let crop = analyse::load(image)?;
                let stem = image.file_stem().unwrap_or_default().to_string_lossy();
                // The same seed under every light: the same place and background, relit.
                let pasted = paste::paste(
                    &crop,
                    w,
                    h,
                    light,
                    paste::seed_for(&identity.name, &stem, seed),
                );
                let name = format!("{stem}.png");
                pasted.image.save(dir.join(&identity.name).join(&name))?;
                let [x, y, pw, ph] = pasted.rect;
                csv.push_str(&format!("{},{name},{x},{y},{pw},{ph}\n", identity.name));
            }
        }
        std::fs::write(dir.join("rects.csv"), csv)?;
        eprintln!("{}: {} frames", dir.display(), set.image_count());
    }
    Ok(())
}

/// A replay of frames held in memory.
struct Frames {
    frames: std::vec::IntoIter<Frame>,
}

impl FrameSource for Frames {
    fn next_frame(&mut self, _deadline: Instant) -> Result<Option<Frame>, SourceError> {
        Ok(self.frames.next())
    }

    fn describe(&self) -> String {
        "evaluation frames".into()
    }
}

fn decide_all(
    frames_dir: &Path,
    embedder: &EmbedderArgs,
    probe_dir: Option<&Path>,
    p: &Protocol,
    rule: &RuleArgs,
    threads: usize,
) -> Result<()> {
    let mut config = embedder.config();
    if let Some(t) = rule.threshold {
        config.matching.threshold = Some(t);
    }
    if let Some(r) = rule.rule {
        config.matching.rule = r.into();
    }
    if let Some(k) = rule.required {
        config.matching.required_matches = k;
    }
    let engine = Engine::load(&config).context("models")?;
    let threshold = {
        use facekey_core::engine::Analyser;
        facekey_core::rule::threshold(&config.matching, engine.calibrated_threshold())
    };
    /// Each identity with its named images.
    type Set = Vec<(String, Vec<(String, image::RgbImage)>)>;
    let load_set = |dir: &Path| -> Result<Set> {
        let set = LabelledSet::read(dir)?;
        set.identities
            .iter()
            .map(|i| {
                let images = i
                    .images
                    .iter()
                    .map(|f| {
                        let name = f
                            .file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .into_owned();
                        Ok((name, analyse::load(f)?))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((i.name.clone(), images))
            })
            .collect()
    };
    let started = Instant::now();
    let enrol_set = load_set(frames_dir)?;
    let probe_set = probe_dir.map(load_set).transpose()?;
    let mut all: Vec<image::RgbImage> = enrol_set
        .iter()
        .flat_map(|(_, v)| v.iter().map(|(_, i)| i.clone()))
        .collect();
    if let Some(ps) = &probe_set {
        all.extend(
            ps.iter()
                .flat_map(|(_, v)| v.iter().map(|(_, i)| i.clone())),
        );
    }
    let cache = Cached::new(&engine, &all, threads)?;
    drop(all);
    eprintln!(
        "analysed the frames in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The galleries the per-attempt scores come from: the same analyses, read back from the cache.
    let gallery_of = |set: &Vec<(String, Vec<(String, image::RgbImage)>)>| -> Result<Gallery> {
        let mut v = Vec::new();
        for (identity, images) in set {
            for (name, image) in images {
                use facekey_core::engine::Analyser;
                let faces = cache.analyse(image).map_err(|e| anyhow::anyhow!("{e}"))?;
                let record = records::ImageRecord {
                    file: Path::new(identity).join(name),
                    faces: faces
                        .into_iter()
                        .map(records::FaceRecord::from_analysed)
                        .collect(),
                };
                v.push(Analysed::from_record(&record));
            }
        }
        Ok(Gallery::new(v))
    };
    let enrol_gallery = gallery_of(&enrol_set)?;
    let probe_gallery = probe_set.as_ref().map(gallery_of).transpose()?;
    let probe_images = probe_set.as_ref().unwrap_or(&enrol_set);
    let attempts = protocol::attempts(&enrol_gallery, p);
    let scores = protocol::attempt_scores(
        &enrol_gallery,
        probe_gallery.as_ref().unwrap_or(&enrol_gallery),
        &attempts,
        config.matching.rule,
        config.matching.required_matches,
    );
    let (mut g_ok, mut i_acc, mut disagree) = (0u64, 0u64, 0u64);
    let (mut gi, mut ii) = (0usize, 0usize);
    let user = UserName::new("eval").map_err(|e| anyhow::anyhow!("{e}"))?;
    let decided = Instant::now();
    for a in &attempts {
        let mut enrolment = Enrolment::new(&user, engine.embedder_id().clone());
        for e in protocol::enrolment(&enrol_gallery, a) {
            enrolment.add_sample("eval", e.to_vec());
        }
        let (presented, _) = &enrol_gallery.identities[a.presented];
        let images = &probe_images
            .iter()
            .find(|(i, _)| i == presented)
            .with_context(|| format!("{presented} is not in the probe frames"))?
            .1;
        let names = &enrol_gallery.identities[a.presented].1;
        let frames: Vec<Frame> = a
            .frames
            .iter()
            .filter_map(|&i| images.iter().find(|(n, _)| *n == names[i].name))
            .map(|(n, image)| Frame::from_rgb(image.clone(), n.clone()))
            .collect();
        let mut source = Frames {
            frames: frames.into_iter(),
        };
        let far = Instant::now() + Duration::from_secs(3600);
        let outcome = decide(
            &cache,
            &enrolment,
            &config,
            &mut source,
            Instant::now(),
            far,
            &mut |_| {},
        );
        if let Outcome::Unavailable(e) = &outcome {
            bail!("attempt {a:?}: {e}");
        }
        let matched = outcome.is_match();
        let score = if a.genuine() {
            gi += 1;
            scores.genuine[gi - 1]
        } else {
            ii += 1;
            scores.impostor[ii - 1]
        };
        if matched != (score < threshold) {
            disagree += 1;
        }
        if a.genuine() {
            g_ok += u64::from(matched);
        } else {
            i_acc += u64::from(matched);
        }
    }
    let far = Rate::new(i_acc, ii as u64);
    let frr = Rate::new(gi as u64 - g_ok, gi as u64);
    println!(
        "decide ({} {} k={} t={:.3}; enrol {}, {} draw(s), up to {} frames): impostor attempts accepted {far} (one-sided 95% upper bound {}); genuine attempts refused {frr}; {} attempts decided in {:.1} s; {} disagreement(s) with the per-attempt scores",
        embedder.embedder,
        config.matching.rule.name(),
        config.matching.required_matches,
        threshold,
        p.enrol,
        p.draws,
        p.frames,
        facekey_eval::stats::percent(far.upper95),
        attempts.len(),
        decided.elapsed().as_secs_f64(),
        disagree
    );
    if disagree > 0 {
        bail!("the decision and the per-attempt scores disagree on {disagree} attempt(s)");
    }
    Ok(())
}
