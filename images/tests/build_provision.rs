//! Real builds and provisioning: debootstraps Debian bookworm armhf under qemu-user-static
//! (cached by recipe hash), then provisions customised roots on a plain directory and on
//! a btrfs loop device.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use bramble_images::provision::strategy::is_subvolume;
use bramble_images::{ImageStore, PiName, Roots, Strategy, SystemRunner};
use common::{BtrfsLoop, cached_base, identity, real_public_key, require, test_recipe};

#[test]
fn debootstrapped_base_is_an_nfs_root_with_sshd_and_a_manifest() {
    let base = cached_base();
    let m = &base.manifest;
    assert_eq!(m.recipe_hash, test_recipe().hash());
    assert_eq!((m.arch.as_str(), m.suite.as_str()), ("armhf", "bookworm"));
    assert!(
        m.packages.iter().any(|p| p.name == "openssh-server" && p.arch == "armhf"),
        "no sshd in manifest"
    );
    assert!(m.size_bytes > 100 << 20, "suspiciously small: {}", m.size_bytes);
    assert_eq!(m.tree_sha256.len(), 64);
    let root = base.root();
    assert!(root.join("usr/sbin/sshd").exists());
    assert!(!root.join("usr/bin/qemu-arm-static").exists(), "emulator left in the base");
    let host_keys: Vec<_> = std::fs::read_dir(root.join("etc/ssh"))
        .expect("etc/ssh")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("ssh_host_"))
        .collect();
    assert!(host_keys.is_empty(), "host keys must not be shared through the base");
    assert_eq!(std::fs::read_to_string(root.join("etc/machine-id")).expect("machine-id"), "");
    let fstab = std::fs::read_to_string(root.join("etc/fstab")).expect("fstab");
    assert!(fstab.lines().all(|l| l.starts_with('#') || !l.contains(" / ") && !l.contains("swap")));
    assert!(
        root.join("etc/systemd/system/getty.target.wants/serial-getty@ttyAMA0.service")
            .is_symlink()
    );

    // The cache answers immediately the second time.
    let t = Instant::now();
    let again = cached_base();
    assert_eq!(again.version, base.version);
    assert!(t.elapsed().as_secs() < 5, "cache lookup took {:?}", t.elapsed());
}

#[test]
fn failed_build_registers_nothing() {
    require(&["debootstrap"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path(), &SystemRunner).expect("store");
    let mut recipe = test_recipe();
    recipe.mirror = "http://127.0.0.1:9/debian".into(); // discard port: refused at once
    let err =
        bramble_images::build(&recipe, &store, &bramble_images::NoProgress).expect_err("must fail");
    assert!(err.to_string().contains("debootstrap"), "{err}");
    assert!(store.list().expect("list").is_empty());
    let left: Vec<_> = std::fs::read_dir(dir.path().join("bases")).expect("bases").collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

fn provision_two_pis(store: &ImageStore) {
    let base = store.import(&cached_base(), &SystemRunner).expect("import base");
    let roots = Roots::new(store, &SystemRunner);
    let key = real_public_key("alice@example");
    let (p1, p2) = (PiName::new("pi-1").expect("n"), PiName::new("pi-2").expect("n"));
    let t = Instant::now();
    let r1 = roots.reimage(&p1, &base, &identity("pi-one", vec![key.clone()])).expect("pi-1");
    eprintln!("{}: provisioned one root in {:?}", store.strategy(), t.elapsed());
    let r2 = roots.reimage(&p2, &base, &identity("pi-two", vec![key.clone()])).expect("pi-2");

    let read =
        |r: &bramble_images::PiRoot, f: &str| std::fs::read_to_string(r.path.join(f)).expect(f);
    assert_eq!(read(&r1, "etc/hostname"), "pi-one\n");
    assert_eq!(read(&r1, "root/.ssh/authorized_keys"), format!("{key}\n"));
    let mode = std::fs::metadata(r1.path.join("root/.ssh/authorized_keys"))
        .expect("ak")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        read(&r1, "etc/systemd/network/20-eth0.131.network")
            .contains("Address=2a00:1098:0:84:1000:1:0:2/64")
    );
    assert_eq!(r1.boot_dir, r1.path.join("boot/firmware"));
    assert!(r1.boot_dir.is_dir());
    for f in ["etc/ssh/ssh_host_ed25519_key.pub", "etc/ssh/ssh_host_rsa_key.pub", "etc/machine-id"]
    {
        assert_ne!(read(&r1, f), read(&r2, f), "{f} shared between Pis");
    }
    assert_eq!(read(&r1, "etc/machine-id").trim().len(), 32);
    // The base is untouched by customisation.
    assert!(!base.root().join("root/.ssh/authorized_keys").exists());

    // Reimage again: the root path stays, content is fresh, nothing is left beside it.
    let old_key = read(&r1, "etc/ssh/ssh_host_ed25519_key.pub");
    let r1b = roots.reimage(&p1, &base, &identity("pi-one", vec![])).expect("reimage");
    assert_eq!(r1b.path, r1.path);
    assert_ne!(read(&r1b, "etc/ssh/ssh_host_ed25519_key.pub"), old_key);
    assert!(
        !store.roots_dir().join("pi-1.new").exists()
            && !store.roots_dir().join("pi-1.journal").exists()
    );
    if store.strategy() == Strategy::BtrfsSnapshot {
        assert!(is_subvolume(&base.root()) && is_subvolume(&r1b.path), "roots must be snapshots");
    }
    roots.remove(&p2).expect("remove");
    assert!(!r2.path.exists());
}

#[test]
fn provision_on_a_plain_directory() {
    require(&["ssh-keygen"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        ImageStore::open(dir.path(), &SystemRunner).expect("store").with_strategy(Strategy::Copy);
    provision_two_pis(&store);
}

#[test]
fn provision_on_btrfs_uses_snapshots() {
    require(&["ssh-keygen"]);
    let fs = BtrfsLoop::new("2G");
    let store = ImageStore::open(fs.path(), &SystemRunner).expect("store");
    assert_eq!(store.strategy(), Strategy::BtrfsSnapshot);
    provision_two_pis(&store);
}
