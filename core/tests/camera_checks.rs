//! The frame checks of `[camera]` through the real decision, on real faces (the johns chips):
//! dark frames skipped and counted, an unchanging face refused, `require_ir` refusing a colour
//! camera; and cameras that fail (block in dequeue, stall, vanish mid-stream, stay busy, send empty, truncated,
//! wrongly sized or oversized buffers, or only dark frames), each answered in time in a cold and a warm attempt.
//! A camera is stood in for by a source that reports itself as one (`camera()`), since these machines have
//! none; the V4L2 path itself is tested under qemu (tests/vm/v4l2-capture).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use facekey_config::Config;
use facekey_core::camera::{CameraInfo, Choice, Counters};
use facekey_core::decision::{decide, FrameReport, FrameVerdict};
use facekey_core::engine::Engine;
use facekey_core::frame::{Frame, FrameSource, PixelFormat, SourceError};
use facekey_core::policy::{
    self, Attempt, Observer, OpenSource, Request, SourceChoice, System, Verdict,
};
use facekey_core::source::{self, read_image};
use facekey_core::store::{Enrolment, Store, UserName};
use facekey_core::{EngineCache, Outcome, Unavailable};
use image::RgbImage;

const PERSON: &str = "John_Simm";
const OTHER: &str = "John_Salley";

fn chips(person: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/faces/johns")
        .join(person);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn rgb(path: &Path) -> RgbImage {
    read_image(path).unwrap().to_rgb().unwrap()
}

/// The shipped configuration with the repository's models, deciding on one counted frame: these tests are about
/// the frame checks (dark frames, the face-change check, infrared), which apply frame by frame whatever the rule;
/// the shipped rule's own tests are in `facekey_core::rule` and eval/tests/accuracy.rs.
fn base_config() -> Config {
    let mut config = Config::default();
    config.models.dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    config.matching.required_matches = 1;
    config
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::load(&base_config()).unwrap())
}

/// `PERSON` enrolled from the first three chips.
fn enrolment() -> Enrolment {
    let engine = engine();
    let user = UserName::new("simm").unwrap();
    let mut enrolment = Enrolment::new(&user, engine.embedder_id().clone());
    for path in &chips(PERSON)[..3] {
        let faces = engine.analyse(&rgb(path)).unwrap();
        assert_eq!(faces.len(), 1, "{}", path.display());
        enrolment.add_sample(PERSON, faces[0].embedding.0.clone());
    }
    enrolment
}

/// The same picture with every level scaled: 0.1 gives the near-black frame of an infrared
/// camera between emitter flashes.
fn dimmed(image: &RgbImage, factor: f32) -> RgbImage {
    let mut out = image.clone();
    for p in out.pixels_mut() {
        for c in p.0.iter_mut() {
            *c = (*c as f32 * factor).round() as u8;
        }
    }
    out
}

/// The picture with deterministic noise of about `sigma` grey levels, as a sensor adds to
/// every frame of a still scene.
fn noisy(image: &RgbImage, sigma: f32, seed: u32) -> RgbImage {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut next = || {
        // xorshift32, then the sum of four uniforms: close enough to a Gaussian here.
        let mut sum = 0.0;
        for _ in 0..4 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            sum += state as f32 / u32::MAX as f32 - 0.5;
        }
        // Four uniforms on [-0.5, 0.5] have variance 1/3.
        sum * sigma * 3f32.sqrt()
    };
    let mut out = image.clone();
    for p in out.pixels_mut() {
        for c in p.0.iter_mut() {
            *c = (*c as f32 + next()).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Frames handed out in order; reports itself as a camera when `info` is set.
struct Scripted {
    frames: Vec<RgbImage>,
    next: usize,
    info: Option<CameraInfo>,
}

impl Scripted {
    fn replay(frames: Vec<RgbImage>) -> Scripted {
        Scripted {
            frames,
            next: 0,
            info: None,
        }
    }

    fn camera(frames: Vec<RgbImage>, infrared: bool) -> Scripted {
        let format = if infrared {
            PixelFormat::Grey
        } else {
            PixelFormat::Yuyv
        };
        let info = CameraInfo {
            device: PathBuf::from("/dev/video-test"),
            driver: "test".into(),
            card: "scripted camera".into(),
            bus: "test".into(),
            identity: facekey_core::camera::identity::CameraIdentity {
                driver: "test".into(),
                card: "scripted camera".into(),
                bus: "test".into(),
                usb: None,
            },
            infrared,
            offers: vec![facekey_core::camera::FormatOffer {
                fourcc: format.fourcc(),
                description: format.name(),
                sizes: vec![],
            }],
            asked: Choice {
                format,
                width: 150,
                height: 150,
                fps: Some(30),
            },
            format,
            width: 150,
            height: 150,
            stride: 450,
            image_size: 150 * 450,
            fps: Some(30.0),
            streaming: true,
            notes: vec![],
            emitter: None,
            counters: Counters::default(),
        };
        Scripted {
            frames,
            next: 0,
            info: Some(info),
        }
    }
}

impl FrameSource for Scripted {
    fn next_frame(&mut self, _deadline: Instant) -> Result<Option<Frame>, SourceError> {
        let frame = self.frames.get(self.next).cloned();
        self.next += 1;
        Ok(frame.map(|image| Frame::from_rgb(image, format!("scripted frame {}", self.next))))
    }

    fn describe(&self) -> String {
        "scripted".into()
    }

    fn camera(&self) -> Option<&CameraInfo> {
        self.info.as_ref()
    }
}

fn run(config: &Config, source: &mut dyn FrameSource) -> (Outcome, Vec<FrameVerdict>) {
    let mut verdicts = Vec::new();
    let outcome = decide(
        engine(),
        &enrolment(),
        config,
        source,
        Instant::now(),
        Instant::now() + Duration::from_secs(30),
        &mut |r: &FrameReport<'_>| verdicts.push(r.verdict),
    );
    (outcome, verdicts)
}

fn stats(outcome: &Outcome) -> facekey_core::Stats {
    outcome
        .stats()
        .cloned()
        .unwrap_or_else(|| panic!("{outcome}"))
}

#[test]
fn dark_frame_is_skipped_and_counted_then_the_lit_frame_matches() {
    let probe = rgb(&chips(PERSON)[5]);
    let mut source = Scripted::replay(vec![dimmed(&probe, 0.1), probe]);
    let (outcome, verdicts) = run(&base_config(), &mut source);
    assert!(outcome.is_match(), "{outcome}");
    assert_eq!(verdicts[0], FrameVerdict::Dark);
    let s = stats(&outcome);
    assert_eq!((s.frames, s.dark_frames, s.faces), (2, 1, 1));
}

#[test]
fn only_dark_frames_give_no_face_and_say_how_many_were_dark() {
    let probe = rgb(&chips(PERSON)[5]);
    let mut source = Scripted::replay(vec![dimmed(&probe, 0.1); 3]);
    let (outcome, _) = run(&base_config(), &mut source);
    assert!(matches!(outcome, Outcome::NoFace { .. }), "{outcome}");
    assert_eq!(stats(&outcome).dark_frames, 3);
    assert!(
        outcome.to_string().contains("3 dark frame(s) skipped"),
        "{outcome}"
    );
}

#[test]
fn dark_threshold_of_100_analyses_dark_frames() {
    let probe = rgb(&chips(PERSON)[5]);
    let mut config = base_config();
    config.camera.dark_threshold = Some(100.0);
    let mut source = Scripted::replay(vec![dimmed(&probe, 0.1)]);
    let (outcome, verdicts) = run(&config, &mut source);
    assert_eq!(stats(&outcome).dark_frames, 0, "{outcome}");
    assert_ne!(verdicts[0], FrameVerdict::Dark);
}

#[test]
fn a_dim_but_not_dark_face_is_analysed_and_matches() {
    // Half brightness: most pixels stay above level 31, so the frame is not dark.
    let probe = rgb(&chips(PERSON)[5]);
    let mut source = Scripted::replay(vec![dimmed(&probe, 0.5)]);
    let (outcome, _) = run(&base_config(), &mut source);
    assert!(outcome.is_match(), "{outcome}");
    assert_eq!(stats(&outcome).dark_frames, 0);
}

#[test]
fn identical_frame_repeated_is_refused_by_the_face_change_check() {
    let probe = rgb(&chips(PERSON)[5]);
    let mut config = base_config();
    config.matching.required_matches = 2;
    let mut source = Scripted::replay(vec![probe.clone(); 4]);
    let (outcome, verdicts) = run(&config, &mut source);
    assert!(matches!(outcome, Outcome::NoMatch { .. }), "{outcome}");
    assert_eq!(
        verdicts,
        [
            FrameVerdict::Match { count: 1 },
            FrameVerdict::Still,
            FrameVerdict::Still,
            FrameVerdict::Still
        ]
    );
    assert_eq!(stats(&outcome).still_frames, 3);
    assert!(
        outcome.to_string().contains("refused as unchanged"),
        "{outcome}"
    );
    // With the check off the same frames match.
    config.camera.min_face_change = 0.0;
    let mut source = Scripted::replay(vec![probe; 2]);
    let (outcome, _) = run(&config, &mut source);
    assert!(outcome.is_match(), "{outcome}");
}

#[test]
fn two_different_photos_of_the_person_satisfy_two_required_matches() {
    let files = chips(PERSON);
    let mut config = base_config();
    config.matching.required_matches = 2;
    let mut source = Scripted::replay(vec![rgb(&files[5]), rgb(&files[6])]);
    let (outcome, verdicts) = run(&config, &mut source);
    assert!(outcome.is_match(), "{outcome}");
    assert_eq!(verdicts[1], FrameVerdict::Match { count: 2 });
}

#[test]
fn on_a_camera_a_frozen_face_never_matches() {
    let probe = rgb(&chips(PERSON)[5]);
    let mut source = Scripted::camera(vec![probe; 6], true);
    let (outcome, verdicts) = run(&base_config(), &mut source);
    assert!(matches!(outcome, Outcome::NoMatch { .. }), "{outcome}");
    assert_eq!(verdicts[0], FrameVerdict::Reference);
    assert!(verdicts[1..].iter().all(|v| *v == FrameVerdict::Still));
    assert_eq!(stats(&outcome).still_frames, 5);
}

#[test]
fn on_a_camera_sensor_noise_is_enough_change_and_the_second_frame_matches() {
    let probe = rgb(&chips(PERSON)[5]);
    // Noise of one grey level, as a good sensor in good light gives.
    let frames = vec![noisy(&probe, 1.0, 1), noisy(&probe, 1.0, 2)];
    let mut changes = Vec::new();
    let mut source = Scripted::camera(frames, true);
    let outcome = decide(
        engine(),
        &enrolment(),
        &base_config(),
        &mut source,
        Instant::now(),
        Instant::now() + Duration::from_secs(30),
        &mut |r: &FrameReport<'_>| changes.push(r.motion),
    );
    assert!(outcome.is_match(), "{outcome}");
    let s = stats(&outcome);
    assert_eq!((s.frames, s.still_frames), (2, 0));
    println!(
        "face change between two noisy frames (sigma 1): {:?}",
        changes[1]
    );
}

#[test]
fn face_change_between_real_frames_is_far_above_the_default_and_identical_is_zero() {
    use facekey_core::liveness::{change, face_crop};
    let engine = engine();
    let files = chips(PERSON);
    let crop = |image: &RgbImage| {
        let faces = engine.analyse(image).unwrap();
        face_crop(image, &faces[0].face).unwrap()
    };
    let a = rgb(&files[5]);
    let default = Config::default().camera.min_face_change;
    let same = change(&crop(&a), &crop(&a));
    let other_photo = change(&crop(&a), &crop(&rgb(&files[6])));
    let noise_half = change(&crop(&noisy(&a, 0.5, 3)), &crop(&noisy(&a, 0.5, 4)));
    let noise_one = change(&crop(&noisy(&a, 1.0, 5)), &crop(&noisy(&a, 1.0, 6)));
    println!(
        "face change: identical {same:.3}, noise sigma 0.5 {noise_half:.3}, sigma 1 {noise_one:.3}, \
         another photo {other_photo:.3}; default minimum {default}"
    );
    assert_eq!(same, 0.0);
    assert!(noise_half > default, "{noise_half}");
    assert!(noise_one > default, "{noise_one}");
    assert!(other_photo > 5.0, "{other_photo}");
}

#[test]
fn a_replay_is_checked_from_its_second_frame_so_one_photo_still_tests() {
    // The verification and CLI tests rely on this: one file, one frame, a match.
    let probe = rgb(&chips(PERSON)[5]);
    let mut source = Scripted::replay(vec![probe]);
    let (outcome, verdicts) = run(&base_config(), &mut source);
    assert!(outcome.is_match(), "{outcome}");
    assert_eq!(verdicts, [FrameVerdict::Match { count: 1 }]);
}

#[test]
fn another_person_never_matches_however_the_frames_change() {
    let files = chips(OTHER);
    let mut source = Scripted::camera(files.iter().map(|f| rgb(f)).collect(), true);
    let (outcome, verdicts) = run(&base_config(), &mut source);
    assert!(matches!(outcome, Outcome::NoMatch { .. }), "{outcome}");
    assert!(verdicts.iter().all(|v| *v == FrameVerdict::NoMatch));
}

/// The attempt the PAM module makes for `simm` on `sudo` (in process, real uid 0), on the source `open`
/// opens, with `observer`; its outcome. The rate-limit state goes beside the configuration's store, and the
/// system state (logind, lid) is an empty folder.
fn attempt_outcome(
    config: &Config,
    engines: &'static EngineCache,
    deadline: Instant,
    open: OpenSource,
    observer: Option<Observer>,
) -> Outcome {
    let mut config = config.clone();
    config.rate_limit.state_dir = config.storage.faces_dir.with_file_name("state");
    let request = Request {
        service: Some("sudo".into()),
        real_uid: 0,
        ..Request::from_this_process()
    };
    let root = tempfile::tempdir().unwrap();
    let system = System::under(root.path());
    let attempt = Attempt {
        source: SourceChoice::Custom(open),
        observer,
        ..Attempt::new("simm", &request, &system, deadline)
    };
    match policy::attempt(&config, attempt, engines, &mut || {}) {
        Verdict::Decided { outcome, .. } => outcome,
        other => panic!("no decision: {other}"),
    }
}

/// A source opener that hands over `source` once.
fn once(source: Scripted) -> OpenSource {
    let mut source = Some(source);
    Box::new(move || {
        source
            .take()
            .map(|s| Box::new(s) as Box<dyn FrameSource>)
            .ok_or(SourceError::Unsupported("opened twice".into()))
    })
}

/// `config` with its store in `dir` holding [`enrolment`].
fn with_stored_enrolment(config: &Config, dir: &Path) -> Config {
    let mut config = config.clone();
    config.storage.faces_dir = dir.join("faces");
    Store::new(&config.storage.faces_dir)
        .save(&enrolment())
        .unwrap();
    config
}

/// [`attempt_outcome`] with a stored enrolment and `source` as the camera.
fn authenticate_with(config: &Config, source: Scripted) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let config = with_stored_enrolment(config, dir.path());
    attempt_outcome(
        &config,
        Box::leak(Box::new(EngineCache::new())),
        Instant::now() + Duration::from_secs(30),
        once(source),
        None,
    )
}

fn two_live_frames() -> Vec<RgbImage> {
    let files = chips(PERSON);
    vec![rgb(&files[5]), rgb(&files[6])]
}

#[test]
fn require_ir_refuses_a_colour_camera_as_unavailable_with_the_reason() {
    let outcome = authenticate_with(&base_config(), Scripted::camera(two_live_frames(), false));
    let Outcome::Unavailable(Unavailable::Source(SourceError::NotInfrared { device, offered })) =
        &outcome
    else {
        panic!("{outcome}");
    };
    assert_eq!(
        (device.as_str(), offered.as_str()),
        ("/dev/video-test", "YUYV")
    );
    let text = outcome.to_string();
    assert!(text.contains("not an infrared camera"), "{text}");
    assert!(text.contains("require_ir"), "{text}");
}

#[test]
fn require_ir_accepts_an_infrared_camera_and_off_accepts_a_colour_one() {
    let outcome = authenticate_with(&base_config(), Scripted::camera(two_live_frames(), true));
    assert!(outcome.is_match(), "{outcome}");
    let mut config = base_config();
    config.camera.require_ir = false;
    let outcome = authenticate_with(&config, Scripted::camera(two_live_frames(), false));
    assert!(outcome.is_match(), "{outcome}");
}

#[test]
fn require_ir_does_not_apply_to_replays_of_files() {
    let spec = format!("file:{}", chips(PERSON)[5].display());
    let source = source::open_source(&spec).unwrap();
    assert!(source.camera().is_none());
    assert!(base_config().camera.require_ir);
    let dir = tempfile::tempdir().unwrap();
    let config = with_stored_enrolment(&base_config(), dir.path());
    let lines = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&lines);
    let outcome = attempt_outcome(
        &config,
        Box::leak(Box::new(EngineCache::new())),
        Instant::now() + Duration::from_secs(30),
        Box::new(move || source::open_source(&spec)),
        Some(Box::new(move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })),
    );
    assert!(outcome.is_match(), "{outcome}");
    assert_eq!(lines.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn first_frame_time_is_recorded() {
    let probe = rgb(&chips(PERSON)[5]);
    let mut source = Scripted::replay(vec![probe]);
    let outcome = decide(
        engine(),
        &enrolment(),
        &base_config(),
        &mut source,
        Instant::now(),
        Instant::now() + Duration::from_secs(30),
        &mut |_| {},
    );
    let s = stats(&outcome);
    assert!(s.first_frame.is_some_and(|t| t <= s.elapsed), "{s:?}");
}

/// Set in the child process of the long-lived test, which runs alone so its thread count is its own.
const STALL_CHILD: &str = "FACEKEY_TEST_STALL_CHILD";

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// A long-lived process (a screen locker, gdm): the first attempt's frame source stalls in open past
/// the deadline (it blocks on a channel this test holds). That attempt answers by its deadline plus
/// grace; a second attempt with a working source, while the first is still stalled, matches within
/// its own deadline (the engine cache is not held by the stalled one); once the stalled open
/// returns, every thread the attempts started ends and the count is back to where it began.
#[test]
fn a_source_stalled_in_open_holds_up_no_later_attempt_and_leaks_no_thread() {
    use facekey_core::decision::DEADLINE_GRACE;
    if std::env::var_os(STALL_CHILD).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_source_stalled_in_open_holds_up_no_later_attempt_and_leaks_no_thread",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(STALL_CHILD, "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = with_stored_enrolment(&base_config(), dir.path());
    // The engine fixture above is loaded: what remains is the process's own threads.
    let baseline = thread_count();
    let engines: &'static EngineCache = Box::leak(Box::new(EngineCache::new()));
    let timeout = Duration::from_millis(800);

    let (release, stalled) = std::sync::mpsc::channel::<()>();
    let stalled = std::sync::Mutex::new(stalled);
    let started = Instant::now();
    let first = attempt_outcome(
        &config,
        engines,
        started + timeout,
        Box::new(move || {
            let _ = stalled.lock().unwrap().recv();
            Err(SourceError::Unsupported("released by the test".into()))
        }),
        None,
    );
    let answered = started.elapsed();
    assert!(
        matches!(first, Outcome::Unavailable(Unavailable::Source(_))),
        "{first}"
    );
    assert!(
        answered < timeout + DEADLINE_GRACE + Duration::from_millis(50),
        "the stalled attempt answered after {answered:?}"
    );

    let started = Instant::now();
    let deadline = started + Duration::from_secs(5);
    let second = attempt_outcome(
        &config,
        engines,
        deadline,
        once(Scripted::replay(two_live_frames())),
        None,
    );
    assert!(second.is_match(), "{second}");
    assert!(Instant::now() < deadline, "answered after its deadline");

    release.send(()).unwrap();
    // The released attempt has nothing left to wait for: its threads end well within one
    // attempt's deadline plus grace. Threads end on their own, so their count is polled.
    let limit = Instant::now() + timeout + DEADLINE_GRACE;
    let mut count = thread_count();
    while count != baseline && Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(5));
        count = thread_count();
    }
    assert_eq!(count, baseline, "threads left running after both attempts");
}

/// What a faulty camera does at each read, in order; after the last step it has nothing more (the stream ended).
enum Step {
    Frame(Frame),
    /// Blocks past any deadline, as `VIDIOC_DQBUF` stuck in a driver would, until the test lets go.
    Block(std::sync::Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>),
    /// Streams nothing more: waits out the deadline and says so (a camera that stopped sending).
    Stall,
    /// Unplugged mid-stream (ENODEV).
    Gone,
    /// Another program holds the camera until the deadline.
    Busy,
}

struct Faulty(std::collections::VecDeque<Step>);

impl FrameSource for Faulty {
    fn next_frame(&mut self, deadline: Instant) -> Result<Option<Frame>, SourceError> {
        match self.0.pop_front() {
            None => Ok(None),
            Some(Step::Frame(frame)) => Ok(Some(frame)),
            Some(Step::Block(released)) => {
                let _ = released.lock().unwrap().recv();
                Err(SourceError::Unsupported("released by the test".into()))
            }
            Some(Step::Stall) => {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                Ok(None)
            }
            Some(Step::Gone) => Err(SourceError::Device {
                device: "/dev/video-faulty".into(),
                reason: "cannot dequeue a buffer: No such device (os error 19)".into(),
            }),
            Some(Step::Busy) => {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                Err(SourceError::Busy {
                    device: "/dev/video-faulty".into(),
                    waited: Duration::from_secs(2),
                })
            }
        }
    }

    fn describe(&self) -> String {
        "faulty camera".into()
    }
}

/// A grey (`GREY`) frame of `image` as a camera's buffer holds it: `width x height` claimed, `data` as given.
fn grey_frame(width: u32, height: u32, data: Vec<u8>) -> Frame {
    Frame {
        width,
        height,
        stride: width as usize,
        format: PixelFormat::Grey,
        data,
        rotation: facekey_core::frame::Rotation::None,
        timestamp: Instant::now(),
        origin: "faulty camera".into(),
    }
}

fn grey_bytes(image: &RgbImage) -> Vec<u8> {
    image
        .pixels()
        .map(|p| facekey_core::frame::luma(p.0))
        .collect()
}

/// Run `steps` (made fresh for each run) as the camera of an attempt with `timeout`, twice: first with an empty
/// engine cache (the models load inside the deadline, as in a fresh process), then again in the same process with
/// the cache warm (a screen locker's second attempt). Each answer must come within the timeout plus 250 ms and
/// pass `check`. Whatever is still blocked is let go at the end.
fn faulty_twice(
    timeout: Duration,
    steps: impl Fn(&std::sync::Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>) -> Vec<Step>,
    check: impl Fn(&Outcome) -> bool,
) {
    let dir = tempfile::tempdir().unwrap();
    let config = with_stored_enrolment(&base_config(), dir.path());
    let engines: &'static EngineCache = Box::leak(Box::new(EngineCache::new()));
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = std::sync::Arc::new(std::sync::Mutex::new(held));
    for run in ["cold", "warm"] {
        let mut source = Some(Faulty(steps(&held).into()));
        let started = Instant::now();
        let outcome = attempt_outcome(
            &config,
            engines,
            started + timeout,
            Box::new(move || {
                source
                    .take()
                    .map(|s| Box::new(s) as Box<dyn FrameSource>)
                    .ok_or(SourceError::Unsupported("opened twice".into()))
            }),
            None,
        );
        let answered = started.elapsed();
        assert!(check(&outcome), "{run}: {outcome}");
        assert!(
            answered <= timeout + Duration::from_millis(250),
            "{run}: answered after {answered:?} ({outcome})"
        );
    }
    drop(release);
}

const FAULT_TIMEOUT: Duration = Duration::from_secs(2);

fn no_decision(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Unavailable(Unavailable::Source(SourceError::Device { reason, .. }))
        if reason.contains("no decision before the deadline"))
}

#[test]
fn a_camera_that_blocks_in_dequeue_is_unavailable_by_the_deadline() {
    faulty_twice(
        FAULT_TIMEOUT,
        |held| vec![Step::Block(held.clone())],
        no_decision,
    );
}

#[test]
fn a_camera_that_streams_then_stalls_or_blocks_never_matches_and_answers_in_time() {
    let stranger = || Step::Frame(Frame::from_rgb(rgb(&chips(OTHER)[0]), "stranger"));
    faulty_twice(
        FAULT_TIMEOUT,
        |_| vec![stranger(), stranger(), Step::Stall],
        |o| matches!(o, Outcome::NoMatch { .. }),
    );
    faulty_twice(
        FAULT_TIMEOUT,
        |held| vec![stranger(), Step::Block(held.clone())],
        |o| !o.is_match() && (no_decision(o) || matches!(o, Outcome::NoMatch { .. })),
    );
}

#[test]
fn a_camera_unplugged_mid_stream_or_busy_is_unavailable_with_the_reason() {
    let stranger = || Step::Frame(Frame::from_rgb(rgb(&chips(OTHER)[0]), "stranger"));
    faulty_twice(
        FAULT_TIMEOUT,
        |_| vec![stranger(), Step::Gone],
        |o| matches!(o, Outcome::Unavailable(Unavailable::Source(SourceError::Device { reason, .. })) if reason.contains("No such device")),
    );
    faulty_twice(
        FAULT_TIMEOUT,
        |_| vec![Step::Busy],
        |o| {
            matches!(
                o,
                Outcome::Unavailable(Unavailable::Source(SourceError::Busy { .. }))
            )
        },
    );
}

#[test]
fn empty_truncated_and_wrongly_sized_buffers_are_skipped_and_counted_and_an_oversized_one_decodes()
{
    let face = rgb(&chips(PERSON)[5]);
    let (w, h) = face.dimensions();
    let grey = grey_bytes(&face);
    faulty_twice(
        Duration::from_secs(10),
        |_| {
            let mut oversized = grey.clone();
            oversized.extend(std::iter::repeat_n(0u8, 4096));
            vec![
                // Zero-length, half a frame, and a buffer for another size than the one claimed.
                Step::Frame(grey_frame(w, h, Vec::new())),
                Step::Frame(grey_frame(w, h, grey[..grey.len() / 2].to_vec())),
                Step::Frame(grey_frame(640, 480, grey.clone())),
                // More bytes than the frame needs (bytesused past the image): the image is read, the rest not.
                Step::Frame(grey_frame(w, h, oversized)),
                Step::Frame(Frame::from_rgb(rgb(&chips(PERSON)[6]), "chip 6")),
            ]
        },
        |o| matches!(o, Outcome::Matched { stats, .. } if stats.bad_frames == 3),
    );
}

#[test]
fn a_camera_that_sends_only_dark_frames_finds_no_face_in_time() {
    let dark = dimmed(&rgb(&chips(PERSON)[5]), 0.05);
    faulty_twice(
        FAULT_TIMEOUT,
        |_| {
            (0..10)
                .map(|_| Step::Frame(Frame::from_rgb(dark.clone(), "dark")))
                .collect()
        },
        |o| matches!(o, Outcome::NoFace { stats } if stats.dark_frames == 10),
    );
}
