//! One module per subcommand.

pub mod backend_args;
pub mod compare;
pub mod doctor;
pub mod list;
pub mod report;
pub mod run;
