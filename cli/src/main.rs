fn main() {
    eprintln!("treecache-cli: not built yet");
    std::process::exit(2);
}
