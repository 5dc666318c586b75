//! One module per subcommand.

pub mod ab;
pub mod backend_args;
pub mod compare;
pub mod doctor;
pub mod explain;
pub mod image;
pub mod isolation;
pub mod lifecycle;
pub mod list;
pub mod report;
pub mod run;
pub mod scale;
