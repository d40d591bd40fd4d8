//! The built `pam_facekey.so` through real libpam (`pam_start_confdir` and a temporary service folder), driven
//! with real face images: every return code, replay frames refused by the trust rules, the deadline with a
//! source that hangs or a rate-limit lock held by another process, the rate limit and which attempts it counts,
//! who may be authenticated (PAM_RUSER, root), and two threads at once.
//!
//! When these tests run inside a remote logind session (over ssh), the module rightly refuses every face
//! decision with PAM_AUTHINFO_UNAVAIL; [`face_decision`] expects that instead, so the tests check the right
//! thing on a developer's remote machine as well as on CI.

use std::ffi::c_int;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use facekey_config::RateLimit;
use facekey_core::policy::{self, System};
use facekey_core::ratelimit::RateLimiter;
use facekey_core::store::UserName;
use facekey_e2e::pam::{
    assert_code, face_decision, Transaction, PAM_AUTHINFO_UNAVAIL, PAM_AUTH_ERR, PAM_SUCCESS,
};
use facekey_e2e::world::{
    face, hanging_fifo, probe_images, set_mode, World, ENROLLED, OTHER, PROBE_IMAGE, USER,
};

/// PAM_SILENT.
const SILENT: c_int = 0x8000;

/// A world with the usual person enrolled for [`USER`] and service `sudo` reading configuration `main`, whose
/// source replays `images`.
fn enrolled_world(images: &[std::path::PathBuf], extra_config: &str, module_args: &str) -> World {
    let world = World::new();
    world.enrol_default(USER);
    let config = world.write_config("main", &World::source(images), extra_config);
    world.write_module_service("sudo", &config, module_args);
    world
}

fn authenticate(world: &World, service: &str, user: &str) -> (c_int, Vec<String>) {
    let mut pam = Transaction::start(&world.pam_dir(), service, user).expect("pam_start_confdir");
    let result = pam.authenticate(0);
    (result.code, pam.infos())
}

#[test]
fn enrolled_face_is_success_and_the_user_is_told() {
    let world = enrolled_world(&probe_images(), "", "");
    let mut pam = Transaction::start(&world.pam_dir(), "sudo", USER).expect("pam_start_confdir");
    let code = pam.authenticate(0).code;
    assert_code(code, face_decision(PAM_SUCCESS), "enrolled person");
    if code == PAM_SUCCESS {
        assert_eq!(
            pam.infos(),
            ["Looking for face...", "Recognised as John Simm"]
        );
    }
    assert_code(pam.setcred(), PAM_SUCCESS, "pam_setcred");
}

#[test]
fn another_person_is_auth_err() {
    let world = enrolled_world(&[face(OTHER, 0), face(OTHER, 1)], "", "");
    let (code, infos) = authenticate(&world, "sudo", USER);
    assert_code(code, face_decision(PAM_AUTH_ERR), "another person");
    if code == PAM_AUTH_ERR {
        assert_eq!(infos, ["Looking for face..."]);
    }
}

#[test]
fn no_face_in_view_is_auth_err() {
    let dogs = facekey_e2e::module::workspace_root().join("tests/data/faces/photos/dogs.jpg");
    let world = enrolled_world(&[dogs], "", "");
    let (code, _) = authenticate(&world, "sudo", USER);
    assert_code(code, face_decision(PAM_AUTH_ERR), "no face");
}

#[test]
fn user_without_enrolment_is_authinfo_unavail_and_silent() {
    let world = enrolled_world(&probe_images(), "", "");
    let (code, infos) = authenticate(&world, "sudo", "someone-else");
    assert_code(code, PAM_AUTHINFO_UNAVAIL, "user with no enrolment");
    assert!(
        infos.is_empty(),
        "nothing said to a user with no enrolment: {infos:?}"
    );
}

#[test]
fn remote_rhost_is_authinfo_unavail_and_loopback_is_not() {
    let world = enrolled_world(&probe_images(), "", "");
    let mut pam = Transaction::start(&world.pam_dir(), "sudo", USER).expect("pam_start_confdir");
    pam.set_rhost("192.0.2.10");
    let remote = pam.authenticate(0);
    assert_code(remote.code, PAM_AUTHINFO_UNAVAIL, "PAM_RHOST=192.0.2.10");
    assert!(
        pam.infos().is_empty(),
        "camera not announced for a remote host"
    );
    drop(pam);

    let mut pam = Transaction::start(&world.pam_dir(), "sudo", USER).expect("pam_start_confdir");
    pam.set_rhost("127.0.0.1");
    assert_code(
        pam.authenticate(0).code,
        face_decision(PAM_SUCCESS),
        "PAM_RHOST=127.0.0.1",
    );
}

#[test]
fn service_not_in_the_allow_list_is_authinfo_unavail() {
    let world = enrolled_world(&probe_images(), "[pam]\nservices = [\"login\"]\n", "");
    // Same module line, allowed and not allowed service names.
    let config = world.config_path("main");
    world.write_module_service("login", &config, "");
    world.write_module_service("sshd", &config, "");
    assert_code(
        authenticate(&world, "sudo", USER).0,
        PAM_AUTHINFO_UNAVAIL,
        "sudo not listed",
    );
    assert_code(
        authenticate(&world, "sshd", USER).0,
        PAM_AUTHINFO_UNAVAIL,
        "sshd",
    );
    assert_code(
        authenticate(&world, "login", USER).0,
        face_decision(PAM_SUCCESS),
        "login listed",
    );
}

#[test]
fn sshd_is_refused_with_the_default_service_list() {
    let world = enrolled_world(&probe_images(), "", "");
    world.write_module_service("sshd", &world.config_path("main"), "");
    assert_code(
        authenticate(&world, "sshd", USER).0,
        PAM_AUTHINFO_UNAVAIL,
        "sshd",
    );
}

#[test]
fn config_writable_by_others_is_refused() {
    let world = enrolled_world(&probe_images(), "", "");
    let config = world.config_path("main");
    assert_code(
        authenticate(&world, "sudo", USER).0,
        face_decision(PAM_SUCCESS),
        "trusted config",
    );

    set_mode(&config, 0o666);
    let (code, infos) = authenticate(&world, "sudo", USER);
    assert_code(code, PAM_AUTHINFO_UNAVAIL, "config mode 0666");
    assert!(infos.is_empty());
    set_mode(&config, 0o620);
    assert_code(
        authenticate(&world, "sudo", USER).0,
        PAM_AUTHINFO_UNAVAIL,
        "config mode 0620",
    );

    // A parent folder others can write (no sticky bit) is refused too.
    set_mode(&config, 0o644);
    set_mode(world.path(), 0o777);
    let refused = authenticate(&world, "sudo", USER).0;
    set_mode(world.path(), 0o700);
    assert_code(refused, PAM_AUTHINFO_UNAVAIL, "parent folder mode 0777");
}

#[test]
fn missing_or_broken_config_is_authinfo_unavail() {
    let world = enrolled_world(&probe_images(), "", "");
    world.write_module_service("missing", &world.path().join("nope.toml"), "");
    assert_code(
        authenticate(&world, "missing", USER).0,
        PAM_AUTHINFO_UNAVAIL,
        "missing config",
    );

    let broken = world.config_path("main");
    std::fs::write(&broken, "[camera]\nsauce = \"typo\"\n").expect("write");
    assert_code(
        authenticate(&world, "sudo", USER).0,
        PAM_AUTHINFO_UNAVAIL,
        "unknown key",
    );
}

#[test]
fn disabled_config_is_authinfo_unavail() {
    let world = enrolled_world(&probe_images(), "[general]\ndisabled = true\n", "");
    let (code, infos) = authenticate(&world, "sudo", USER);
    assert_code(code, PAM_AUTHINFO_UNAVAIL, "disabled");
    assert!(infos.is_empty());
}

#[test]
fn bad_module_arguments_are_authinfo_unavail() {
    let world = enrolled_world(&probe_images(), "", "timeout=0");
    assert_code(
        authenticate(&world, "sudo", USER).0,
        PAM_AUTHINFO_UNAVAIL,
        "timeout=0",
    );
    world.write_service(
        "relative",
        &["auth required {module} config=main.toml".to_owned()],
    );
    assert_code(
        authenticate(&world, "relative", USER).0,
        PAM_AUTHINFO_UNAVAIL,
        "relative config path",
    );
}

#[test]
fn unreadable_camera_is_authinfo_unavail() {
    let world = World::new();
    world.enrol_default(USER);
    let missing = world.path().join("no-such-image.jpg");
    let config = world.write_config("main", &World::source(&[missing]), "");
    world.write_module_service("sudo", &config, "");
    assert_code(
        authenticate(&world, "sudo", USER).0,
        PAM_AUTHINFO_UNAVAIL,
        "source cannot be read",
    );
}

#[test]
fn notices_follow_the_config_and_pam_silent() {
    let world = enrolled_world(
        &probe_images(),
        "[pam]\ndetection_notice = false\nconfirmation = false\n",
        "",
    );
    let (code, infos) = authenticate(&world, "sudo", USER);
    assert_code(code, face_decision(PAM_SUCCESS), "notices off");
    assert!(infos.is_empty(), "{infos:?}");

    let world = enrolled_world(&probe_images(), "", "");
    let mut pam = Transaction::start(&world.pam_dir(), "sudo", USER).expect("pam_start_confdir");
    assert_code(
        pam.authenticate(SILENT).code,
        face_decision(PAM_SUCCESS),
        "PAM_SILENT",
    );
    assert!(pam.infos().is_empty(), "{:?}", pam.infos());
}

#[test]
fn fifo_in_place_of_an_image_is_refused_without_waiting() {
    let world = World::new();
    world.enrol_default(USER);
    let fifo = hanging_fifo(world.path());
    let config = world.write_config("main", &World::source(&[fifo]), "");
    world.write_module_service("sudo", &config, "timeout=2");
    let mut pam = Transaction::start(&world.pam_dir(), "sudo", USER).expect("pam_start_confdir");
    let result = pam.authenticate(0);
    // Opening a FIFO with nobody writing would wait forever; a replay opens it non-blocking and refuses it.
    assert!(
        result.elapsed < Duration::from_millis(2000),
        "pam_authenticate took {:?} with a FIFO as the source: it waited on it",
        result.elapsed
    );
    // A source that cannot be read is "unavailable", so the stack moves on to the password.
    assert_code(result.code, PAM_AUTHINFO_UNAVAIL, "FIFO as the source");
}

#[test]
fn replay_frame_owned_by_nobody_or_in_a_folder_others_can_write_is_not_a_match() {
    /// nobody.
    const NOBODY: u32 = 65_534;
    let world = World::new();
    world.enrol_default(USER);
    // Two frames of one look (the shipped rule needs two); the checks below change the first.
    let image = world.copy_image(&face(ENROLLED, PROBE_IMAGE), "frames", "face.jpg");
    let second = world.copy_image(&face(ENROLLED, PROBE_IMAGE + 1), "frames", "face2.jpg");
    let frames = image.parent().expect("a folder").to_path_buf();
    let by_file = world.write_config("file", &World::source(&[image.clone(), second]), "");
    let by_dir = world.write_config("dir", &format!("dir:{}", frames.display()), "");
    world.write_module_service("sudo", &by_file, "");
    world.write_module_service("login", &by_dir, "");
    // Trusted (root-owned, 0644 in a 0700 folder): the enrolled face matches, both ways.
    for service in ["sudo", "login"] {
        assert_code(
            authenticate(&world, service, USER).0,
            face_decision(PAM_SUCCESS),
            &format!("{service}: trusted replay frame"),
        );
    }

    std::os::unix::fs::chown(&image, Some(NOBODY), Some(NOBODY)).expect("chown nobody");
    for service in ["sudo", "login"] {
        let (code, infos) = authenticate(&world, service, USER);
        assert_code(
            code,
            PAM_AUTHINFO_UNAVAIL,
            &format!("{service}: replay frame owned by nobody"),
        );
        assert!(
            !infos.iter().any(|i| i.starts_with("Recognised")),
            "{infos:?}"
        );
    }
    std::os::unix::fs::chown(&image, Some(0), Some(0)).expect("chown root");

    set_mode(&frames, 0o777);
    let refused: Vec<_> = ["sudo", "login"]
        .iter()
        .map(|service| authenticate(&world, service, USER).0)
        .collect();
    set_mode(&frames, 0o700);
    assert_code(
        refused[0],
        PAM_AUTHINFO_UNAVAIL,
        "file: in a folder mode 0777",
    );
    assert_code(refused[1], PAM_AUTHINFO_UNAVAIL, "dir: mode 0777");

    set_mode(&image, 0o666);
    assert_code(
        authenticate(&world, "sudo", USER).0,
        PAM_AUTHINFO_UNAVAIL,
        "replay frame mode 0666",
    );
}

#[test]
fn sixth_attempt_after_five_failures_is_refused_without_opening_the_camera() {
    if policy::remote_session(&System::real()).is_some() {
        eprintln!(
            "remote session: every attempt is refused before the rate limit; nothing to count"
        );
        return;
    }
    let world = enrolled_world(&[face(OTHER, 0)], "", "");
    for attempt in 1..=5 {
        let (code, infos) = authenticate(&world, "sudo", USER);
        assert_code(code, PAM_AUTH_ERR, &format!("failure {attempt}"));
        assert_eq!(infos, ["Looking for face..."]);
    }
    // Now the enrolled face itself is refused: the limit is checked before any frame is read.
    world.write_config("main", &World::source(&probe_images()), "");
    let (code, infos) = authenticate(&world, "sudo", USER);
    assert_code(code, PAM_AUTH_ERR, "sixth attempt, enrolled face");
    assert!(
        infos.is_empty(),
        "the camera is not announced when rate limited: {infos:?}"
    );
    // Opening a FIFO as the source is refused (PAM_AUTHINFO_UNAVAIL); PAM_AUTH_ERR shows it was never opened.
    let fifo = hanging_fifo(world.path());
    world.write_config("main", &World::source(&[fifo]), "");
    let mut pam = Transaction::start(&world.pam_dir(), "sudo", USER).expect("pam_start_confdir");
    let seventh = pam.authenticate(0);
    assert_code(
        seventh.code,
        PAM_AUTH_ERR,
        "seventh attempt, hanging source",
    );
    // Another user is not limited.
    world.write_config("main", &World::source(&probe_images()), "");
    world.enrol_default("second-user");
    assert_code(
        authenticate(&world, "sudo", "second-user").0,
        PAM_SUCCESS,
        "another user",
    );
}

#[test]
fn two_threads_authenticating_at_once_each_get_their_own_answer() {
    let world = Arc::new(World::new());
    world.enrol_default(USER);
    let matching = world.write_config("matching", &World::source(&probe_images()), "");
    let other = world.write_config("other", &World::source(&[face(OTHER, 0)]), "");
    world.write_module_service("sudo", &matching, "");
    world.write_module_service("login", &other, "");
    let barrier = Arc::new(Barrier::new(2));
    let run = |service: &'static str| {
        let (world, barrier) = (world.clone(), barrier.clone());
        std::thread::spawn(move || {
            let mut pam =
                Transaction::start(&world.pam_dir(), service, USER).expect("pam_start_confdir");
            barrier.wait();
            pam.authenticate(0).code
        })
    };
    let (a, b) = (run("sudo"), run("login"));
    let (a, b) = (a.join().expect("thread"), b.join().expect("thread"));
    assert_code(
        a,
        face_decision(PAM_SUCCESS),
        "thread with the enrolled face",
    );
    assert_code(b, face_decision(PAM_AUTH_ERR), "thread with another face");
}

/// Failures the rate limit counts for `user` in `world` now.
fn counted(world: &World, user: &str) -> u32 {
    let limiter = RateLimiter::open(&RateLimit {
        state_dir: world.state_dir(),
        ..RateLimit::default()
    })
    .expect("open the rate-limit state");
    let user = UserName::new(user).expect("valid user name");
    limiter
        .failures(
            &user,
            facekey_core::ratelimit::Stamp::now(),
            Instant::now() + Duration::from_secs(1),
        )
        .expect("read the rate-limit state")
}

/// Another process holding an exclusive `flock` on `path`: a shell opens the file, takes the lock on that open
/// file description with util-linux's `flock`, and becomes `sleep` (same process, same descriptor). Killed and
/// reaped on drop, which releases the lock.
struct LockHolder(Child);

impl LockHolder {
    /// Returns once the child holds the lock: it prints a line only after `flock` has taken it.
    fn hold(path: &Path) -> LockHolder {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("exec 9<>\"$1\" && flock --exclusive 9 && echo locked && exec sleep 600")
            .arg("lock-holder")
            .arg(path)
            .stdout(Stdio::piped())
            .spawn()
            .expect("run sh");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("the child's stdout"))
            .read_line(&mut line)
            .expect("read from the child");
        assert_eq!(line.trim(), "locked", "the child did not take the lock");
        LockHolder(child)
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn rate_limit_lock_held_by_another_process_is_authinfo_unavail_within_the_deadline() {
    if policy::remote_session(&System::real()).is_some() {
        eprintln!("remote session: every attempt is refused before the rate limit is read");
        return;
    }
    // `login`: the configuration's 3 s; `sudo`: timeout=1, the deadline the held lock meets.
    let world = enrolled_world(&probe_images(), "", "timeout=1");
    world.write_module_service("login", &world.config_path("main"), "");
    // One attempt creates the state folder and the user's file, as the module makes them.
    assert_code(
        authenticate(&world, "login", USER).0,
        PAM_SUCCESS,
        "lock free",
    );
    let holder = LockHolder::hold(&world.state_dir().join(USER));
    let mut pam = Transaction::start(&world.pam_dir(), "sudo", USER).expect("pam_start_confdir");
    let result = pam.authenticate(0);
    eprintln!(
        "rate-limit lock held elsewhere: answered in {:?}",
        result.elapsed
    );
    assert_code(
        result.code,
        PAM_AUTHINFO_UNAVAIL,
        "rate-limit lock held elsewhere",
    );
    assert!(
        result.elapsed <= Duration::from_millis(1000 + 250),
        "pam_authenticate took {:?} with the rate-limit lock held, more than the timeout + 250 ms",
        result.elapsed
    );
    assert!(
        result.elapsed >= Duration::from_millis(900),
        "gave up after {:?}, before the deadline",
        result.elapsed
    );
    assert!(
        pam.infos().is_empty(),
        "the camera is not announced: {:?}",
        pam.infos()
    );
    drop(pam);
    drop(holder);
    assert_code(
        authenticate(&world, "login", USER).0,
        PAM_SUCCESS,
        "lock released",
    );
}

#[test]
fn su_for_another_user_is_not_authenticated_by_face() {
    let world = enrolled_world(&probe_images(), "", "");
    let config = world.config_path("main");
    world.write_module_service("su", &config, "");
    // The tests run as root, so the real uid does not name the asker: PAM_RUSER does, as su sets it.
    let mut pam = Transaction::start(&world.pam_dir(), "su", USER).expect("pam_start_confdir");
    pam.set_ruser("someone-else");
    assert_code(
        pam.authenticate(0).code,
        PAM_AUTHINFO_UNAVAIL,
        "su to USER asked by someone-else",
    );
    assert!(
        pam.infos().is_empty(),
        "the camera is not announced: {:?}",
        pam.infos()
    );
    drop(pam);
    // The user's own su or sudo: PAM_RUSER is the user, or unset.
    for service in ["su", "sudo"] {
        let mut pam =
            Transaction::start(&world.pam_dir(), service, USER).expect("pam_start_confdir");
        pam.set_ruser(USER);
        assert_code(
            pam.authenticate(0).code,
            face_decision(PAM_SUCCESS),
            &format!("{service} asked by the user"),
        );
        drop(pam);
        assert_code(
            authenticate(&world, service, USER).0,
            face_decision(PAM_SUCCESS),
            &format!("{service} without PAM_RUSER"),
        );
    }
}

#[test]
fn a_service_in_other_user_services_authenticates_another_user() {
    let world = enrolled_world(
        &probe_images(),
        "[pam]\nother_user_services = [\"su\"]\n",
        "",
    );
    let config = world.config_path("main");
    world.write_module_service("su", &config, "");
    for (service, expected) in [
        ("su", face_decision(PAM_SUCCESS)),
        ("sudo", PAM_AUTHINFO_UNAVAIL),
    ] {
        let mut pam =
            Transaction::start(&world.pam_dir(), service, USER).expect("pam_start_confdir");
        pam.set_ruser("someone-else");
        assert_code(
            pam.authenticate(0).code,
            expected,
            &format!("{service} asked by someone-else"),
        );
    }
}

#[test]
fn root_is_refused_unless_allow_root() {
    let world = World::new();
    world.enrol_default("root");
    let source = World::source(&probe_images());
    let refused = world.write_config("refused", &source, "");
    let allowed = world.write_config("allowed", &source, "[pam]\nallow_root = true\n");
    world.write_module_service("login", &refused, "");
    world.write_module_service("sudo", &allowed, "");
    let (code, infos) = authenticate(&world, "login", "root");
    assert_code(code, PAM_AUTHINFO_UNAVAIL, "root, allow_root = false");
    assert!(infos.is_empty(), "the camera is not announced: {infos:?}");
    assert_code(
        authenticate(&world, "sudo", "root").0,
        face_decision(PAM_SUCCESS),
        "root, allow_root = true",
    );
}

/// An attempt that stalls past its deadline stays counted: see `policy::tests` (replay sources can no longer
/// be made to hang, so that one is tested in core with a source that blocks).
#[test]
fn attempts_that_never_reached_a_frame_are_refunded() {
    if policy::remote_session(&System::real()).is_some() {
        eprintln!(
            "remote session: every attempt is refused before the rate limit; nothing to count"
        );
        return;
    }
    let world = World::new();
    world.enrol_default(USER);
    // No enrolment: nothing is charged.
    let replay = World::source(&probe_images());
    let config = world.write_config("main", &replay, "");
    world.write_module_service("sudo", &config, "timeout=1");
    assert_code(
        authenticate(&world, "sudo", "not-enrolled").0,
        PAM_AUTHINFO_UNAVAIL,
        "no enrolment",
    );
    assert_eq!(counted(&world, "not-enrolled"), 0, "no enrolment");
    // Sources that fail before their first frame: charged, then refunded.
    let missing = world.path().join("no-such-image.jpg");
    let fifo = hanging_fifo(world.path());
    for (source, what) in [(missing, "missing image"), (fifo, "FIFO as the image")] {
        world.write_config("main", &World::source(&[source]), "");
        assert_code(
            authenticate(&world, "sudo", USER).0,
            PAM_AUTHINFO_UNAVAIL,
            what,
        );
        assert_eq!(counted(&world, USER), 0, "{what}: refunded");
    }
    // A face that does not match stays counted.
    world.write_config("main", &World::source(&[face(OTHER, 0)]), "");
    assert_code(
        authenticate(&world, "sudo", USER).0,
        face_decision(PAM_AUTH_ERR),
        "another face",
    );
    assert_eq!(counted(&world, USER), 1, "a failure stays counted");
}
