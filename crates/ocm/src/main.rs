//! The `ocm` command-line tool. Not implemented yet.

fn main() {
    eprintln!("ocm: not implemented yet");
    std::process::exit(2);
}
