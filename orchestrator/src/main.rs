//! The `bramble` command: controller, operator tools and API client in one binary.

fn main() -> std::process::ExitCode {
    bramble::cli::main()
}
