//! The `bramble` command, built with the end-to-end tests so that they can start it as
//! a process (`CARGO_BIN_EXE_bramble-e2e`; another package's binary has no such
//! variable): the cluster test runs its lab controllers as `bramble-e2e lab controller`.

fn main() -> std::process::ExitCode {
    bramble::cli::main()
}
