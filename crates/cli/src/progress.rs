//! The progress bar: current workload and an ETA.

use hvbench_core::scenario::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    pub fn new(quiet: bool) -> Bar {
        let bar = ProgressBar::with_draw_target(
            Some(0),
            if quiet {
                ProgressDrawTarget::hidden()
            } else {
                ProgressDrawTarget::stderr()
            },
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (ETA {eta})",
            )
            .expect("the template is valid"),
        );
        Bar { bar }
    }
}

impl Progress for Bar {
    fn begin(&self, total: u64) {
        self.bar.set_length(total);
    }
    fn grow(&self, extra: u64) {
        self.bar.inc_length(extra);
    }
    fn workload(&self, name: &str) {
        self.bar.set_message(name.to_string());
    }
    fn step(&self) {
        self.bar.inc(1);
    }
    fn note(&self, message: &str) {
        self.bar.println(message);
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
