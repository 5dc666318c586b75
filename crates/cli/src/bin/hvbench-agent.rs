//! The `hvbench-agent` executable: see the `hvbench-agent` crate.

fn main() {
    hvbench_agent::main();
}
