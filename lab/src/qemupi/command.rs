//! The command lines of a QEMU Pi, as data: QEMU's arguments, and the `ip`/`tc` commands
//! that join the slot's veth end to the machine's tap (and undo it). Pure, so the
//! exact lines are tested here and only run in `vm`.

use std::path::Path;

use bramble_images::CommandLine;

use super::QemuPiConfig;

/// QEMU's arguments for booting `kernel` (and `initramfs`) with the boot line `append`:
/// a `virt` board with Cortex-A53s under TCG, no display, no monitor, no reboot (a
/// reboot ends the process, as a kernel that stops), the serial console on stdio, the
/// NIC a virtio-net device on the tap with the Pi's MAC.
pub fn qemu_args(
    cfg: &QemuPiConfig,
    kernel: &Path,
    initramfs: Option<&Path>,
    append: &str,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "-M",
        "virt",
        "-cpu",
        "cortex-a53",
        "-smp",
        &cfg.cpus.to_string(),
        "-m",
        &cfg.memory_mib.to_string(),
        "-nographic",
        "-no-reboot",
        "-monitor",
        "none",
        "-serial",
        "stdio",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push("-pidfile".into());
    args.push(cfg.pid_file().display().to_string());
    args.push("-kernel".into());
    args.push(kernel.display().to_string());
    if let Some(initramfs) = initramfs {
        args.push("-initrd".into());
        args.push(initramfs.display().to_string());
    }
    args.push("-append".into());
    args.push(append.to_string());
    args.push("-netdev".into());
    args.push(format!("tap,id=net0,ifname={},script=no,downscript=no", cfg.tap));
    args.push("-device".into());
    args.push(format!("virtio-net-device,netdev=net0,mac={}", cfg.pi.mac()));
    args
}

/// A tap in the Pi's namespace, and every frame arriving on either of it and the veth
/// end redirected out of the other (`tc` ingress + u32 match-all + mirred: the kernels
/// the lab runs on have no bridge, nor the `matchall` classifier).
pub fn join_commands(cfg: &QemuPiConfig) -> Vec<CommandLine> {
    let (ns, iface, tap) = (cfg.pi.netns.as_str(), cfg.pi.interface.as_str(), cfg.tap.as_str());
    let ip = |args: &[&str]| CommandLine::new("ip").args(["-n", ns]).args(args);
    let tc = |args: &[&str]| CommandLine::new("tc").args(["-n", ns]).args(args);
    let redirect = |from: &str, to: &str| {
        tc(&["filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32"])
            .args(["match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", to])
    };
    vec![
        ip(&["tuntap", "add", "dev", tap, "mode", "tap"]),
        ip(&["link", "set", "dev", tap, "up"]),
        tc(&["qdisc", "add", "dev", iface, "ingress"]),
        redirect(iface, tap),
        tc(&["qdisc", "add", "dev", tap, "ingress"]),
        redirect(tap, iface),
    ]
}

/// Undoes [`join_commands`]: the veth end's ingress qdisc (with its filter) and the tap
/// (with its own). Each may find nothing to remove.
pub fn unjoin_commands(cfg: &QemuPiConfig) -> Vec<CommandLine> {
    let ns = cfg.pi.netns.as_str();
    vec![
        CommandLine::new("tc").args([
            "-n",
            ns,
            "qdisc",
            "del",
            "dev",
            &cfg.pi.interface,
            "ingress",
        ]),
        CommandLine::new("ip").args(["-n", ns, "link", "del", "dev", &cfg.tap]),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::pisim::Serial;

    fn cfg() -> QemuPiConfig {
        QemuPiConfig::new(Serial(0x5eed_0001), "blab10pi", PathBuf::from("/var/lab/qemu/p1"))
    }

    fn lines(cmds: Vec<CommandLine>) -> Vec<String> {
        cmds.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn qemu_boots_the_kernel_read_on_the_tap_with_the_pis_mac() {
        let append = "console=ttyS1,115200 root=/dev/nfs console=ttyAMA0";
        let k = Path::new("/var/lab/qemu/p1/boot/vmlinuz-6.1");
        let i = Path::new("/var/lab/qemu/p1/boot/initrd.img-6.1");
        let got = qemu_args(&cfg(), k, Some(i), append).join(" ");
        assert_eq!(
            got,
            "-M virt -cpu cortex-a53 -smp 2 -m 1024 -nographic -no-reboot -monitor none \
             -serial stdio -pidfile /var/lab/qemu/p1/qemu.pid \
             -kernel /var/lab/qemu/p1/boot/vmlinuz-6.1 -initrd /var/lab/qemu/p1/boot/initrd.img-6.1 \
             -append console=ttyS1,115200 root=/dev/nfs console=ttyAMA0 \
             -netdev tap,id=net0,ifname=tap0,script=no,downscript=no \
             -device virtio-net-device,netdev=net0,mac=dc:a6:32:ed:00:01"
        );
        let args = qemu_args(&cfg(), k, None, append);
        assert!(!args.contains(&"-initrd".to_string()), "no initramfs read, none passed");
        let at = args.iter().position(|a| a == "-append").expect("-append");
        assert_eq!(args[at + 1], append, "the boot line is one argument");
    }

    #[test]
    fn the_tap_and_the_veth_end_redirect_to_each_other() {
        let want = [
            "ip -n blab10pi tuntap add dev tap0 mode tap",
            "ip -n blab10pi link set dev tap0 up",
            "tc -n blab10pi qdisc add dev eth0 ingress",
            "tc -n blab10pi filter add dev eth0 parent ffff: protocol all u32 match u32 0 0 \
             action mirred egress redirect dev tap0",
            "tc -n blab10pi qdisc add dev tap0 ingress",
            "tc -n blab10pi filter add dev tap0 parent ffff: protocol all u32 match u32 0 0 \
             action mirred egress redirect dev eth0",
        ];
        assert_eq!(lines(join_commands(&cfg())), want);
        let undo =
            ["tc -n blab10pi qdisc del dev eth0 ingress", "ip -n blab10pi link del dev tap0"];
        assert_eq!(lines(unjoin_commands(&cfg())), undo);
    }
}
