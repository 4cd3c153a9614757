trait Loader {
    #[tracealloc::profile]
    fn load(&self) -> Vec<u8>;
}

fn main() {}
