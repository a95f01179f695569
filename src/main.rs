//! `tark-wasmer`: manage tark plugins and call them on wasmer. The command line lives in
//! [`cli`]; everything it does goes through the `tark_wasmer` library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
