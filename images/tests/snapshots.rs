//! Snapshots and restores of per-Pi roots: a reimage keeps the replaced root as a
//! snapshot, a restore swaps a snapshot back in (moved, not copied) and keeps the root it
//! replaces, and an on-demand snapshot is whole or absent. A crash injected at every
//! point converges on a re-run: the live root is at every instant a complete root, no
//! snapshot is lost or leaked. Runs on a plain directory and on a btrfs loop device.

mod common;

use std::path::Path;
use std::sync::Mutex;

use bramble_images::customize::HostKeyType;
use bramble_images::provision::journal::Step;
use bramble_images::provision::{CrashHooks, CrashPoint};
use bramble_images::{ImageStore, ImagesError, PiName, Roots, Strategy, SystemRunner};
use common::{BtrfsLoop, fake_base, identity, require};

const KEYS: &[HostKeyType] = &[HostKeyType::Ed25519];

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

fn crash_at(point: CrashPoint) -> CrashAt {
    CrashAt { point, fired: Mutex::new(false) }
}

/// The image a complete root holds (its content and its marker agree), else `None`.
fn image_of(root: &Path) -> Option<String> {
    let image = std::fs::read_to_string(root.join("etc/image")).ok()?;
    let marker = std::fs::read_to_string(root.join("etc/bramble/root.json")).ok()?;
    marker.contains(&format!("\"image\": \"{image}\"")).then_some(image)
}

/// Entries of the roots directory and of the Pi's snapshot directory that name `pi`.
fn entries(store: &ImageStore, roots: &Roots, pi: &PiName) -> (Vec<String>, Vec<String>) {
    let names = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let live: Vec<String> = names(&store.roots_dir())
        .into_iter()
        .filter(|n| n.starts_with(&format!("{pi}")) && !n.starts_with('.'))
        .collect();
    (live, names(&roots.snapshots_dir(pi)))
}

const REIMAGE_POINTS: &[CrashPoint] = &[
    CrashPoint::JournalWritten,
    CrashPoint::Cloned,
    CrashPoint::Customised,
    CrashPoint::After(Step::Provision),
    CrashPoint::After(Step::MarkPrepared),
    CrashPoint::After(Step::Swap),
    CrashPoint::After(Step::Keep),
    CrashPoint::After(Step::Finish),
];

const RESTORE_POINTS: &[CrashPoint] = &[
    CrashPoint::JournalWritten,
    CrashPoint::After(Step::MoveIn),
    CrashPoint::After(Step::Mark),
    CrashPoint::After(Step::MarkPrepared),
    CrashPoint::After(Step::Swap),
    CrashPoint::After(Step::Keep),
    CrashPoint::After(Step::Finish),
];

fn every_crash_point(store_dir: &Path, expect: Strategy) {
    require(&["ssh-keygen", "cp"]);
    let store = ImageStore::open(store_dir, &SystemRunner).expect("store");
    assert_eq!(store.strategy(), expect);
    let (a, b) = (fake_base(&store, "image-a", 4096), fake_base(&store, "image-b", 4096));
    let roots = Roots::new(&store, &SystemRunner).with_host_keys(KEYS);
    for (i, point) in REIMAGE_POINTS.iter().enumerate() {
        let pi = PiName::new(&format!("pi-r{i}")).expect("name");
        roots.reimage(&pi, &a, &identity("old", vec![])).expect("first provisioning");
        std::fs::write(roots.path(&pi).join("customer-file"), "mine").expect("write");
        let hooks = crash_at(*point);
        let crashed = Roots::new(&store, &SystemRunner)
            .with_host_keys(KEYS)
            .with_hooks(&hooks)
            .reimage_keeping(&pi, &b, &identity("new", vec![]), Some("snap-1"));
        assert!(matches!(crashed, Err(ImagesError::InjectedCrash { .. })), "{point:?}");
        let seen = image_of(&roots.path(&pi));
        assert!(matches!(seen.as_deref(), Some("image-a" | "image-b")), "{point:?}: {seen:?}");
        roots.resume(&pi).expect("resume");
        assert_eq!(image_of(&roots.path(&pi)).as_deref(), Some("image-b"), "{point:?}");
        assert!(!roots.path(&pi).join("customer-file").exists(), "{point:?}");
        let kept = roots.snapshot_path(&pi, "snap-1");
        assert_eq!(image_of(&kept).as_deref(), Some("image-a"), "{point:?}: kept root");
        assert_eq!(std::fs::read_to_string(kept.join("customer-file")).expect("kept"), "mine");
        assert_eq!(
            entries(&store, &roots, &pi),
            (vec![pi.to_string()], vec!["snap-1".to_string()]),
            "{point:?}: leftovers"
        );
    }
    for (i, point) in RESTORE_POINTS.iter().enumerate() {
        let pi = PiName::new(&format!("pi-s{i}")).expect("name");
        roots.reimage(&pi, &a, &identity("old", vec![])).expect("first provisioning");
        std::fs::write(roots.path(&pi).join("customer-file"), "mine").expect("write");
        let old_key = std::fs::read(roots.path(&pi).join("etc/ssh/ssh_host_ed25519_key.pub"))
            .expect("old key");
        roots.reimage_keeping(&pi, &b, &identity("new", vec![]), Some("snap-1")).expect("reimage");
        let hooks = crash_at(*point);
        let crashed = Roots::new(&store, &SystemRunner)
            .with_hooks(&hooks)
            .restore(&pi, "snap-1", "snap-2", "image-a", &a.version);
        assert!(matches!(crashed, Err(ImagesError::InjectedCrash { .. })), "{point:?}");
        let seen = image_of(&roots.path(&pi));
        assert!(matches!(seen.as_deref(), Some("image-a" | "image-b")), "{point:?}: {seen:?}");
        roots.resume(&pi).expect("resume");
        let live = roots.path(&pi);
        assert_eq!(image_of(&live).as_deref(), Some("image-a"), "{point:?}");
        assert_eq!(std::fs::read_to_string(live.join("customer-file")).expect("back"), "mine");
        let key = std::fs::read(live.join("etc/ssh/ssh_host_ed25519_key.pub")).expect("key");
        assert_eq!(key, old_key, "{point:?}: the old host keys are back");
        let kept = roots.snapshot_path(&pi, "snap-2");
        assert_eq!(image_of(&kept).as_deref(), Some("image-b"), "{point:?}: replaced root kept");
        assert_eq!(
            entries(&store, &roots, &pi),
            (vec![pi.to_string()], vec!["snap-2".to_string()]),
            "{point:?}: leftovers"
        );
        // And the restore is itself undone by restoring the root it replaced.
        roots.restore(&pi, "snap-2", "snap-3", "image-b", &b.version).expect("undo");
        assert_eq!(image_of(&live).as_deref(), Some("image-b"), "{point:?}");
        assert!(!live.join("customer-file").exists());
        assert_eq!(image_of(&roots.snapshot_path(&pi, "snap-3")).as_deref(), Some("image-a"));
    }
    // An on-demand snapshot crashed before its rename leaves only a partial copy, which
    // the re-run replaces; the snapshot is whole or absent.
    let pi = PiName::new("pi-demand").expect("name");
    roots.reimage(&pi, &a, &identity("old", vec![])).expect("provision");
    let hooks = crash_at(CrashPoint::Cloned);
    let crashed = Roots::new(&store, &SystemRunner).with_hooks(&hooks).snapshot(&pi, "snap-d");
    assert!(matches!(crashed, Err(ImagesError::InjectedCrash { .. })), "{crashed:?}");
    assert!(roots.get_snapshot(&pi, "snap-d").expect("get").is_none());
    let snap = roots.snapshot(&pi, "snap-d").expect("snapshot");
    assert_eq!(snap.image.as_deref(), Some("image-a"));
    assert_eq!(snap.size_bytes.is_some(), expect == Strategy::Copy);
    assert_eq!(entries(&store, &roots, &pi).1, ["snap-d"]);
    assert!(roots.list_snapshots().expect("list").contains(&(pi.clone(), "snap-d".into())));
    // Restoring a snapshot that is gone fails and leaves the live root alone.
    roots.delete_snapshot(&pi, "snap-d").expect("delete");
    roots.delete_snapshot(&pi, "snap-d").expect("delete again");
    let err = roots.restore(&pi, "snap-d", "snap-e", "image-a", &a.version).expect_err("gone");
    assert!(matches!(err, ImagesError::SnapshotMissing { .. }), "{err:?}");
    assert_eq!(image_of(&roots.path(&pi)).as_deref(), Some("image-a"));
    assert_eq!(entries(&store, &roots, &pi), (vec![pi.to_string()], vec![]));
}

#[test]
fn snapshots_and_restores_converge_from_every_crash_point_on_a_plain_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path(), &SystemRunner).expect("store");
    every_crash_point(dir.path(), store.strategy());
}

#[test]
fn snapshots_and_restores_converge_from_every_crash_point_on_btrfs() {
    let fs = BtrfsLoop::new("512M");
    every_crash_point(fs.path(), Strategy::BtrfsSnapshot);
}

#[test]
fn a_restore_never_writes_through_a_symlink_the_pi_planted() {
    require(&["ssh-keygen", "cp"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(&dir.path().join("store"), &SystemRunner).expect("store");
    let (a, b) = (fake_base(&store, "image-a", 16), fake_base(&store, "image-b", 16));
    let roots = Roots::new(&store, &SystemRunner).with_host_keys(KEYS);
    let pi = PiName::new("pi-evil").expect("name");
    roots.reimage(&pi, &a, &identity("old", vec![])).expect("provision");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).expect("outside");
    let bramble = roots.path(&pi).join("etc/bramble");
    std::fs::remove_dir_all(&bramble).expect("rm");
    std::os::unix::fs::symlink(&outside, &bramble).expect("symlink");
    roots.reimage_keeping(&pi, &b, &identity("new", vec![]), Some("snap-1")).expect("reimage");
    let err = roots.restore(&pi, "snap-1", "snap-2", "image-a", &a.version).expect_err("unsafe");
    assert!(matches!(err, ImagesError::UnsafeRoot { .. }), "{err:?}");
    assert_eq!(std::fs::read_dir(&outside).expect("ls").count(), 0, "nothing written outside");
    assert_eq!(image_of(&roots.path(&pi)).as_deref(), Some("image-b"), "live root untouched");
    // The snapshot is back in its place, no journal is left to block the next job.
    assert!(roots.snapshot_path(&pi, "snap-1").join("etc/image").exists(), "snapshot kept");
    assert!(!store.roots_dir().join("pi-evil.journal").exists());
    assert!(!store.roots_dir().join("pi-evil.new").exists());
    roots.reimage(&pi, &a, &identity("again", vec![])).expect("a later reinstall works");
}
