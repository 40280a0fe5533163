//! SSH host key fingerprints against the real `ssh-keygen`: what `host_key_fingerprints`
//! reports of a root is what `ssh-keygen -l -E sha256 -f` prints of its
//! `etc/ssh/ssh_host_*_key.pub` files, for ed25519, ECDSA and RSA keys, and a reimage
//! reports the keys of the root it wrote.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;

use bramble_images::customize::HostKeyType;
use bramble_images::{
    ImageStore, KeyFingerprint, PiName, Roots, SystemRunner, host_key_fingerprints,
};
use common::{fake_base, identity, require, sh};

/// A line `ssh-keygen -l -E sha256` printed, as a fingerprint: its second field, and the
/// key type named by its trailing `(TYPE)` (ssh-keygen names the algorithm family; the
/// keys generated here are the family's default type).
fn from_ssh_keygen(line: &str) -> KeyFingerprint {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let key_type = match fields.last().copied().unwrap_or_default() {
        "(ED25519)" => "ssh-ed25519",
        "(ECDSA)" => "ecdsa-sha2-nistp256",
        "(RSA)" => "ssh-rsa",
        other => panic!("ssh-keygen printed an unexpected type {other} in {line:?}"),
    };
    KeyFingerprint { key_type: key_type.into(), fingerprint: fields[1].to_string() }
}

fn ssh_keygen_says(pub_file: &Path) -> KeyFingerprint {
    from_ssh_keygen(&sh(&format!("ssh-keygen -l -E sha256 -f {}", pub_file.display())))
}

/// `ssh-keygen -lf` of every `etc/ssh/ssh_host_*_key.pub` in `root` (the shell's glob).
fn ssh_keygen_of_root(root: &Path) -> Vec<KeyFingerprint> {
    let glob = format!("{}/etc/ssh/ssh_host_*_key.pub", root.display());
    let out =
        sh(&format!("export LC_ALL=C; for f in {glob}; do ssh-keygen -l -E sha256 -f $f; done"));
    out.lines().map(from_ssh_keygen).collect()
}

#[test]
fn fingerprints_are_what_ssh_keygen_prints_for_ed25519_ecdsa_and_rsa() {
    require(&["ssh-keygen"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let ssh = root.join("etc/ssh");
    std::fs::create_dir_all(&ssh).expect("mkdir");
    assert_eq!(host_key_fingerprints(&root).expect("no keys yet"), vec![]);
    for kind in ["ed25519", "ecdsa", "rsa"] {
        let key = ssh.join(format!("ssh_host_{kind}_key"));
        sh(&format!("ssh-keygen -q -t {kind} -N '' -C root@test -f {}", key.display()));
    }
    let want = ssh_keygen_of_root(&root);
    assert_eq!(want.len(), 3, "{want:?}");
    assert_eq!(host_key_fingerprints(&root).expect("fingerprints"), want);
    // Each key line on its own gives the same answer.
    for kind in ["ed25519", "ecdsa", "rsa"] {
        let file = ssh.join(format!("ssh_host_{kind}_key.pub"));
        let line = std::fs::read_to_string(&file).expect("pub");
        assert_eq!(KeyFingerprint::of_line(&line).expect(kind), ssh_keygen_says(&file));
    }

    // What is not a host public key, or not one the root holds itself, is left out:
    // another .pub file, a garbled key, a symlink to a key outside the root.
    let outside = dir.path().join("outside_key");
    sh(&format!("ssh-keygen -q -t ed25519 -N '' -f {}", outside.display()));
    std::fs::write(ssh.join("ssh_host_bogus_key.pub"), "ssh-ed25519 !!!\n").expect("bogus");
    std::fs::copy(outside.with_extension("pub"), ssh.join("other.pub")).expect("copy");
    symlink(outside.with_extension("pub"), ssh.join("ssh_host_linked_key.pub")).expect("symlink");
    assert_eq!(host_key_fingerprints(&root).expect("fingerprints"), want);

    // A root whose etc/ssh is a symlink reports nothing; one without etc/ssh neither.
    let linked = dir.path().join("linked");
    std::fs::create_dir_all(&linked).expect("mkdir");
    symlink(root.join("etc"), linked.join("etc")).expect("symlink etc");
    assert_eq!(host_key_fingerprints(&linked).expect("through a symlink"), vec![]);
    assert_eq!(host_key_fingerprints(&dir.path().join("nowhere")).expect("missing"), vec![]);
}

#[test]
fn a_reimage_reports_the_fresh_keys_it_wrote() {
    require(&["ssh-keygen", "cp"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path(), &SystemRunner).expect("store");
    let base = fake_base(&store, "image-a", 1024);
    let pi = PiName::new("pi-keys").expect("name");
    let kinds = [HostKeyType::Ed25519, HostKeyType::Rsa];
    let roots = Roots::new(&store, &SystemRunner).with_host_keys(&kinds);

    let first = roots.reimage(&pi, &base, &identity("keys", vec![])).expect("provision");
    let before = host_key_fingerprints(&first.path).expect("fingerprints");
    let types: Vec<&str> = before.iter().map(|k| k.key_type.as_str()).collect();
    assert_eq!(types, ["ssh-ed25519", "ssh-rsa"]);
    assert_eq!(before, ssh_keygen_of_root(&first.path));

    let second = roots.reimage(&pi, &base, &identity("keys", vec![])).expect("reimage");
    assert_eq!(second.path, first.path, "the live root keeps its path");
    let after = host_key_fingerprints(&second.path).expect("fingerprints");
    assert_eq!(after, ssh_keygen_of_root(&second.path));
    for (old, new) in before.iter().zip(&after) {
        assert_ne!(old.fingerprint, new.fingerprint, "{} key was not renewed", old.key_type);
    }
}
