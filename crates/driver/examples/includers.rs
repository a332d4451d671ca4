//! Print the sources that include a header: `cargo run --example includers -- SRC ARCH HEADER...`.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (src, arch, headers) = (&args[0], &args[1], &args[2..]);
    let t = std::time::Instant::now();
    let set = headers.iter().cloned().collect();
    let found = klpforge_driver::includes::sources_including(std::path::Path::new(src), &set, arch);
    for f in &found {
        println!("{f}");
    }
    eprintln!("{} sources in {:.2?}", found.len(), t.elapsed());
}
