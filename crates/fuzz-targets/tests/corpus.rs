//! Every file of the fuzz corpus (`fuzz/corpus/<target>/`, seeds) and of the regressions
//! (`fuzz/regressions/<target>/`, inputs that once broke a target) is run through its target
//! as an ordinary test: what fuzzing found stays fixed.

use std::path::Path;

#[test]
fn every_corpus_and_regression_input_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut ran = 0;
    for (name, target) in fuzz_targets::TARGETS {
        let mut seeds = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else { continue };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                // a panic here names the input that broke the target
                eprintln!("{name}: {}", path.display());
                target(&data);
                seeds += 1;
            }
        }
        assert!(seeds > 0, "target {name} has no corpus: add seeds under fuzz/corpus/{name}/");
        ran += seeds;
    }
    eprintln!("{ran} inputs ran through {} targets", fuzz_targets::TARGETS.len());
}
