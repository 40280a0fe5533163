//! Reimage atomicity: a crash injected at every point of the job leaves the old root or
//! the new one live (never a mixture) and a re-run converges; a full disk keeps the old
//! root. Runs on a plain directory and on a btrfs loop device, with small fake bases.

mod common;

use std::path::Path;
use std::sync::Mutex;

use bramble_images::customize::HostKeyType;
use bramble_images::provision::journal::Step;
use bramble_images::provision::{CrashHooks, CrashPoint};
use bramble_images::{ImageStore, ImagesError, PiName, Roots, Strategy, SystemRunner};

/// RSA generation costs about a second per root; these tests only need fresh keys.
const KEYS: &[HostKeyType] = &[HostKeyType::Ed25519];
use common::{BtrfsLoop, fake_base, identity, real_public_key, require, sh};

/// Crashes the first time `point` is reached.
struct CrashAt {
    point: CrashPoint,
    fired: Mutex<bool>,
}

impl CrashHooks for CrashAt {
    fn check(&self, point: CrashPoint) -> bramble_images::Result<()> {
        let mut fired = self.fired.lock().expect("lock");
        if point == self.point && !*fired {
            *fired = true;
            return Err(ImagesError::InjectedCrash { point: format!("{point:?}") });
        }
        Ok(())
    }
}

const POINTS: &[CrashPoint] = &[
    CrashPoint::JournalWritten,
    CrashPoint::Cloned,
    CrashPoint::Customised,
    CrashPoint::After(Step::Provision),
    CrashPoint::After(Step::MarkPrepared),
    CrashPoint::After(Step::Swap),
    CrashPoint::After(Step::DeleteNew),
    CrashPoint::After(Step::Finish),
];

fn live_image(root: &Path) -> Option<String> {
    let image = std::fs::read_to_string(root.join("etc/image")).ok()?;
    let marker = std::fs::read_to_string(root.join("etc/bramble/root.json")).ok()?;
    // Complete root: its marker (written last) names the same image as its content.
    marker.contains(&format!("\"image\": \"{image}\"")).then_some(image)
}

fn crash_everywhere(store_dir: &Path, expect: Strategy) {
    require(&["ssh-keygen", "cp"]);
    let store = ImageStore::open(store_dir, &SystemRunner).expect("store");
    assert_eq!(store.strategy(), expect);
    let (a, b) = (fake_base(&store, "image-a", 4096), fake_base(&store, "image-b", 4096));
    let key = real_public_key("crash@test");
    for (i, point) in POINTS.iter().enumerate() {
        let pi = PiName::new(&format!("pi-{i}")).expect("name");
        let roots = Roots::new(&store, &SystemRunner).with_host_keys(KEYS);
        roots.reimage(&pi, &a, &identity("old", vec![])).expect("first provisioning");
        let hooks = CrashAt { point: *point, fired: Mutex::new(false) };
        let crashed = Roots::new(&store, &SystemRunner)
            .with_host_keys(KEYS)
            .with_hooks(&hooks)
            .reimage(&pi, &b, &identity("new", vec![key.clone()]));
        assert!(
            matches!(crashed, Err(ImagesError::InjectedCrash { .. })),
            "{point:?}: {crashed:?}"
        );
        let live = roots.path(&pi);
        let seen = live_image(&live);
        assert!(
            seen.as_deref() == Some("image-a") || seen.as_deref() == Some("image-b"),
            "{point:?}: live root is neither complete old nor complete new: {seen:?}"
        );
        let done = roots.resume(&pi).expect("resume");
        let expect_resume = *point != CrashPoint::After(Step::Finish);
        assert_eq!(done.is_some(), expect_resume, "{point:?}");
        assert_eq!(live_image(&live).as_deref(), Some("image-b"), "{point:?}");
        let hostname = std::fs::read_to_string(live.join("etc/hostname")).expect("hostname");
        assert_eq!(hostname, "new\n", "{point:?}");
        let names: Vec<String> = std::fs::read_dir(store.roots_dir())
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("pi-{i}")))
            .collect();
        assert_eq!(names, [format!("pi-{i}")], "{point:?}: leftovers");
    }
}

#[test]
fn every_crash_point_converges_on_a_plain_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path(), &SystemRunner).expect("store");
    crash_everywhere(dir.path(), store.strategy());
}

#[test]
fn every_crash_point_converges_on_btrfs() {
    let fs = BtrfsLoop::new("512M");
    crash_everywhere(fs.path(), Strategy::BtrfsSnapshot);
}

#[test]
fn full_disk_keeps_the_old_root_and_a_rerun_succeeds_after_space_is_freed() {
    require(&["ssh-keygen", "mount", "umount"]);
    let mnt = tempfile::tempdir().expect("tempdir");
    sh(&format!("mount -t tmpfs -o size=7m im-tmpfs {}", mnt.path().display()));
    let result = std::panic::catch_unwind(|| {
        let store = ImageStore::open(&mnt.path().join("store"), &SystemRunner).expect("store");
        assert_eq!(store.strategy(), Strategy::Copy);
        let small = fake_base(&store, "image-a", 1024);
        let big = fake_base(&store, "image-b", 5 << 19);
        let filler = mnt.path().join("filler");
        std::fs::write(&filler, vec![1u8; 2 << 20]).expect("filler");
        let pi = PiName::new("pi-full").expect("name");
        let roots = Roots::new(&store, &SystemRunner).with_host_keys(KEYS);
        roots.reimage(&pi, &small, &identity("old", vec![])).expect("small fits");
        let err = roots.reimage(&pi, &big, &identity("new", vec![])).expect_err("cannot fit");
        assert!(err.is_disk_full(), "{err:?}");
        assert_eq!(live_image(&roots.path(&pi)).as_deref(), Some("image-a"));
        assert!(!store.roots_dir().join("pi-full.new").exists());
        assert!(!store.roots_dir().join("pi-full.journal").exists());
        // Once space is freed the same call succeeds.
        std::fs::remove_file(&filler).expect("free space");
        roots.reimage(&pi, &big, &identity("new", vec![])).expect("fits now");
        assert_eq!(live_image(&roots.path(&pi)).as_deref(), Some("image-b"));
    });
    sh(&format!("umount {}", mnt.path().display()));
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
