//! Resolving the kernel modules a guest needs from `modules.dep`, in load order.
//!
//! `modules.dep` has one line per module, `path: dep-path dep-path ...`, where the dependencies
//! are the whole transitive closure. Modules compiled into the kernel are listed in
//! `modules.builtin` and need no loading. Module names use `_` where file names may use `-`
//! (`virtio-rng.ko` is `virtio_rng`). Files are `.ko`, `.ko.xz` or `.ko.zst`; the image holds
//! them decompressed, since the guest has no decompressor of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::ImageError;

/// A module to put into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// The module name (`virtio_pci`).
    pub name: String,
    /// Its file, relative to the modules directory as `modules.dep` gives it.
    pub rel_path: String,
}

/// What a guest needs, and what it could use.
#[derive(Debug, Clone, Copy)]
pub struct ModuleRequest<'a> {
    pub name: &'a str,
    /// When absent from `modules.dep` (and not built in), skip it instead of failing.
    pub optional: bool,
}

/// The module name of a `modules.dep` path: the file name without `.ko*`, `-` as `_`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.find(".ko").map_or(file, |i| &file[..i]);
    stem.replace('-', "_")
}

/// A parsed `modules.dep` and `modules.builtin`.
#[derive(Debug, Default)]
pub struct ModuleDb {
    deps: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

impl ModuleDb {
    /// Parses the text of `modules.dep` and of `modules.builtin` (empty if absent).
    pub fn parse(dep: &str, builtin: &str) -> ModuleDb {
        let mut deps = BTreeMap::new();
        for line in dep.lines() {
            let Some((path, rest)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim();
            if path.is_empty() {
                continue;
            }
            let list = rest.split_whitespace().map(module_name).collect();
            deps.insert(module_name(path), (path.to_string(), list));
        }
        let builtin = builtin
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(module_name)
            .collect();
        ModuleDb { deps, builtin }
    }

    /// Reads `modules.dep` and `modules.builtin` from a modules directory.
    pub fn load(modules_dir: &Path) -> Result<ModuleDb, ImageError> {
        let dep_path = modules_dir.join("modules.dep");
        let dep = std::fs::read_to_string(&dep_path).map_err(|source| ImageError::NoModules {
            dir: modules_dir.to_path_buf(),
            source,
        })?;
        let builtin =
            std::fs::read_to_string(modules_dir.join("modules.builtin")).unwrap_or_default();
        Ok(ModuleDb::parse(&dep, &builtin))
    }

    /// Whether the kernel has the driver, built in or as a module.
    pub fn has(&self, name: &str) -> bool {
        let name = name.replace('-', "_");
        self.is_builtin(&name) || self.deps.contains_key(&name)
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&name.replace('-', "_"))
    }

    /// The modules to load for `wanted`, dependencies first, each once; built-in ones skipped.
    /// Returns the list and the names of optional modules that were not found.
    pub fn resolve(
        &self,
        wanted: &[ModuleRequest<'_>],
    ) -> Result<(Vec<ModuleFile>, Vec<String>), ImageError> {
        let mut out = Vec::new();
        let mut done = BTreeSet::new();
        let mut skipped = Vec::new();
        for req in wanted {
            let name = req.name.replace('-', "_");
            if self.is_builtin(&name) {
                continue;
            }
            if !self.deps.contains_key(&name) {
                if req.optional {
                    skipped.push(name);
                    continue;
                }
                return Err(ImageError::MissingModule {
                    name,
                    needed_by: None,
                });
            }
            self.visit(&name, None, &mut done, &mut Vec::new(), &mut out)?;
        }
        Ok((out, skipped))
    }

    fn visit(
        &self,
        name: &str,
        needed_by: Option<&str>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
        out: &mut Vec<ModuleFile>,
    ) -> Result<(), ImageError> {
        if done.contains(name) || self.is_builtin(name) || stack.iter().any(|s| s == name) {
            return Ok(());
        }
        let Some((path, deps)) = self.deps.get(name) else {
            return Err(ImageError::MissingModule {
                name: name.to_string(),
                needed_by: needed_by.map(String::from),
            });
        };
        stack.push(name.to_string());
        for d in deps {
            self.visit(d, Some(name), done, stack, out)?;
        }
        stack.pop();
        done.insert(name.to_string());
        out.push(ModuleFile {
            name: name.to_string(),
            rel_path: path.clone(),
        });
        Ok(())
    }
}

/// Reads a module file, decompressing `.ko.xz` and `.ko.zst`.
pub fn read_module(path: &Path) -> Result<Vec<u8>, ImageError> {
    let raw = std::fs::read(path).map_err(|source| ImageError::Io {
        what: path.display().to_string(),
        source,
    })?;
    decompress(path, raw)
}

fn decompress(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>, ImageError> {
    let name = path.to_string_lossy();
    let bad = |reason: String| ImageError::BadModule {
        path: PathBuf::from(path),
        reason,
    };
    let data = if name.ends_with(".ko.xz") {
        let mut out = Vec::with_capacity(raw.len() * 4);
        lzma_rs::xz_decompress(&mut &raw[..], &mut out).map_err(|e| bad(format!("xz: {e}")))?;
        out
    } else if name.ends_with(".ko.zst") {
        let mut out = Vec::with_capacity(raw.len() * 4);
        let mut dec = ruzstd::decoding::StreamingDecoder::new(&raw[..])
            .map_err(|e| bad(format!("zstd: {e}")))?;
        dec.read_to_end(&mut out)
            .map_err(|e| bad(format!("zstd: {e}")))?;
        out
    } else if name.ends_with(".ko") {
        raw
    } else {
        return Err(bad(
            "unsupported module compression (hvbench reads .ko, .ko.xz and .ko.zst)".into(),
        ));
    };
    if data.len() < 4 || &data[..4] != b"\x7fELF" {
        return Err(bad("not an ELF object after decompression".into()));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/fuse/virtiofs.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/fs/fuse/fuse.ko
kernel/drivers/virtio/virtio.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz
kernel/drivers/virtio/virtio_ring.ko.xz:
kernel/drivers/virtio/virtio_pci.ko.xz: kernel/drivers/virtio/virtio_pci_legacy_dev.ko.xz kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz kernel/drivers/virtio/virtio.ko.xz kernel/drivers/virtio/virtio_ring.ko.xz
kernel/drivers/virtio/virtio_pci_legacy_dev.ko.xz: kernel/drivers/virtio/virtio.ko.xz kernel/drivers/virtio/virtio_ring.ko.xz
kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz:
kernel/drivers/char/virtio_console.ko.xz: kernel/drivers/virtio/virtio.ko.xz kernel/drivers/virtio/virtio_ring.ko.xz
kernel/drivers/net/virtio_net.ko.zst: kernel/drivers/net/net_failover.ko.zst kernel/net/core/failover.ko.zst kernel/drivers/virtio/virtio.ko.xz kernel/drivers/virtio/virtio_ring.ko.xz
kernel/drivers/net/net_failover.ko.zst: kernel/net/core/failover.ko.zst
kernel/net/core/failover.ko.zst:
kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko.xz kernel/drivers/virtio/virtio_ring.ko.xz
";

    fn req(names: &[&str]) -> Vec<ModuleRequest<'static>> {
        names
            .iter()
            .map(|&n| ModuleRequest {
                name: Box::leak(n.to_string().into_boxed_str()),
                optional: false,
            })
            .collect()
    }

    fn names(m: &[ModuleFile]) -> Vec<&str> {
        m.iter().map(|m| m.name.as_str()).collect()
    }

    fn pos(m: &[ModuleFile], n: &str) -> usize {
        m.iter()
            .position(|x| x.name == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    }

    #[test]
    fn dependencies_come_first_each_once() {
        let db = ModuleDb::parse(DEP, "");
        let (m, skipped) = db
            .resolve(&req(&["virtio_pci", "virtio_console", "virtio_net"]))
            .unwrap();
        assert!(skipped.is_empty());
        let n = names(&m);
        let mut uniq = n.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), n.len(), "{n:?}");
        assert_eq!(n[0], "virtio_ring");
        assert!(pos(&m, "virtio") < pos(&m, "virtio_pci_legacy_dev"));
        assert!(pos(&m, "virtio_pci_legacy_dev") < pos(&m, "virtio_pci"));
        assert!(pos(&m, "virtio_pci_modern_dev") < pos(&m, "virtio_pci"));
        assert!(pos(&m, "failover") < pos(&m, "net_failover"));
        assert!(pos(&m, "net_failover") < pos(&m, "virtio_net"));
        assert_eq!(
            m[pos(&m, "virtio_net")].rel_path,
            "kernel/drivers/net/virtio_net.ko.zst"
        );
        assert_eq!(n.len(), 9);
    }

    #[test]
    fn builtin_modules_are_skipped() {
        let builtin = "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n";
        let db = ModuleDb::parse(DEP, builtin);
        let (m, _) = db
            .resolve(&req(&["virtio_console", "virtio_ring"]))
            .unwrap();
        assert_eq!(names(&m), ["virtio_console"]);
    }

    #[test]
    fn missing_module_is_an_error_unless_optional() {
        let db = ModuleDb::parse(DEP, "");
        let e = db.resolve(&req(&["virtio_blk"])).unwrap_err();
        assert!(e.to_string().contains("virtio_blk"), "{e}");
        let wanted = [
            ModuleRequest {
                name: "virtio_blk",
                optional: true,
            },
            ModuleRequest {
                name: "virtio_console",
                optional: false,
            },
        ];
        let (m, skipped) = db.resolve(&wanted).unwrap();
        assert_eq!(skipped, ["virtio_blk"]);
        assert_eq!(names(&m), ["virtio_ring", "virtio", "virtio_console"]);
        // A dependency missing from modules.dep names who needed it.
        let db = ModuleDb::parse("a.ko: b.ko\n", "");
        let e = db.resolve(&req(&["a"])).unwrap_err().to_string();
        assert!(e.contains("b") && e.contains("needed by a"), "{e}");
    }

    #[test]
    fn dashes_and_underscores_are_one_name() {
        let db = ModuleDb::parse(DEP, "");
        let (m, _) = db.resolve(&req(&["virtio-rng"])).unwrap();
        assert_eq!(names(&m), ["virtio_ring", "virtio", "virtio_rng"]);
        assert_eq!(module_name("kernel/x/virtio-rng.ko.zst"), "virtio_rng");
    }

    #[test]
    fn decompresses_xz_and_zstd() {
        let elf = b"\x7fELF module body module body module body".to_vec();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &elf[..], &mut xz).unwrap();
        assert_eq!(decompress(Path::new("a.ko.xz"), xz).unwrap(), elf);
        let zst = ruzstd::encoding::compress_to_vec(
            &elf[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert_eq!(decompress(Path::new("a.ko.zst"), zst).unwrap(), elf);
        assert_eq!(decompress(Path::new("a.ko"), elf.clone()).unwrap(), elf);
        assert!(decompress(Path::new("a.ko.gz"), elf.clone())
            .unwrap_err()
            .to_string()
            .contains(".ko.zst"));
        assert!(decompress(Path::new("a.ko.xz"), b"garbage".to_vec()).is_err());
    }

    #[test]
    fn real_modules_resolve_when_installed() {
        let Ok(k) = crate::image::KernelImage::find(None) else {
            return;
        };
        let Ok(db) = ModuleDb::load(&k.modules_dir) else {
            return;
        };
        let wanted: Vec<ModuleRequest> = crate::image::GUEST_MODULES
            .iter()
            .map(|&(name, optional)| ModuleRequest { name, optional })
            .collect();
        let (m, _) = db.resolve(&wanted).unwrap();
        for f in &m {
            let bytes = read_module(&k.modules_dir.join(&f.rel_path)).unwrap();
            assert_eq!(&bytes[..4], b"\x7fELF");
        }
    }
}
