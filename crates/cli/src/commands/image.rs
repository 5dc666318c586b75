//! `hvbench image build | list | rm`: the root file systems of application workloads.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use hvbench_core::image::rootfs::{self, Recipe};

#[derive(Args, Debug)]
pub struct ImageArgs {
    #[command(subcommand)]
    action: ImageAction,
    /// Where root file systems are cached (default: ~/.cache/hvbench).
    #[arg(long, global = true, value_name = "DIR")]
    image_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum ImageAction {
    /// Builds the applications' root file system (PostgreSQL, a C toolchain, nginx) unless
    /// it is cached: a directory and an ext4 image.
    Build,
    /// The cached root file systems.
    List,
    /// Removes cached root file systems: the one whose hash starts with HASH, or all.
    Rm {
        /// A hash prefix as `image list` shows it.
        hash: Option<String>,
        /// Every cached root file system.
        #[arg(long, conflicts_with = "hash")]
        all: bool,
    },
}

/// The recipe of this host's suite.
pub fn recipe() -> anyhow::Result<Recipe> {
    let suite = rootfs::host_suite()
        .context("cannot read the Debian suite (VERSION_CODENAME) from /etc/os-release")?;
    Ok(Recipe::applications(&suite))
}

/// The applications' root file system: the cached one, else built now with its progress on
/// stderr (what `run` does the first time an application is selected).
pub fn ensure(image_dir: Option<&std::path::Path>) -> anyhow::Result<rootfs::RootFs> {
    let cache = rootfs::cache_root(image_dir);
    let recipe = recipe()?;
    if let Some(r) = rootfs::cached(&cache, &recipe) {
        return Ok(r);
    }
    eprintln!(
        "the applications need their root file system, which is not built yet (once; `hvbench \
         image build` does the same)"
    );
    let r = rootfs::build(&cache, &recipe, &|line| eprintln!("{line}"))
        .context("building the applications' root file system")?;
    eprintln!("built: {}", rootfs::describe(&r));
    Ok(r)
}

pub fn run(args: ImageArgs) -> anyhow::Result<ExitCode> {
    let cache = rootfs::cache_root(args.image_dir.as_deref());
    match args.action {
        ImageAction::Build => {
            let recipe = recipe()?;
            if let Some(r) = rootfs::cached(&cache, &recipe) {
                println!("cached: {}", rootfs::describe(&r));
                return Ok(ExitCode::SUCCESS);
            }
            let r = rootfs::build(&cache, &recipe, &|line| eprintln!("{line}"))?;
            println!("built: {}", rootfs::describe(&r));
        }
        ImageAction::List => {
            let all = rootfs::list(&cache);
            if all.is_empty() {
                println!(
                    "no root file system in {} (hvbench image build)",
                    cache.display()
                );
            }
            for r in all {
                println!("{}", rootfs::describe(&r));
            }
        }
        ImageAction::Rm { hash, all } => {
            if hash.is_none() && !all {
                anyhow::bail!("name a hash (hvbench image list) or --all");
            }
            for d in rootfs::remove(&cache, hash.as_deref())? {
                println!("removed {}", d.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
