//! What `sympos` is counted among, read from the original object: the translation unit an
//! image tells a local symbol's copy by, and the same-named symbols of the object itself.

use klpforge_elf::SymbolId;

use crate::analyze::{ObjInfo, SymKind};
use crate::klp::ImageScope;

/// The image scope of original symbol `osym`.
pub fn image_scope(o: &ObjInfo<'_, '_>, osym: SymbolId) -> ImageScope {
    let Some(file) = o.sym(osym).file.filter(|_| o.obj.symbol(osym).is_local()) else {
        return ImageScope::default();
    };
    let functions = o
        .obj
        .symbols()
        .filter(|(id, s)| {
            o.sym(*id).file == Some(file)
                && o.sym(*id).kind == SymKind::Function
                && s.section().is_some_and(|sec| {
                    let n = o.obj.section(sec).name_lossy();
                    o.obj.section(sec).is_alloc() && !n.starts_with(".discard")
                })
        })
        .map(|(id, _)| o.sym(id).name.to_string())
        .collect();
    ImageScope {
        file: Some(o.sym(file).name.to_string()),
        functions,
    }
}

/// The symbols `sympos` is counted among in an object without an image: the defined ones
/// named `name` other than section and file symbols, in table order.
pub fn sympos_candidates(o: &ObjInfo<'_, '_>, name: &str) -> Vec<SymbolId> {
    o.named(name)
        .iter()
        .copied()
        .filter(|&x| {
            o.obj.symbol(x).section().is_some()
                && !matches!(o.sym(x).kind, SymKind::Section | SymKind::File)
        })
        .collect()
}
