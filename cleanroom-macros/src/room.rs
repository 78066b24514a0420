//! What a test or a fixture asks of a service's room:
//! `postgres(migrations = "…", tool = "…", init = "…")`, `redis(shared)`.
//! Parsed, checked (paths against the crate's directory, at compile time)
//! and rendered as a `RoomOptions` here, for both attributes.

use std::path::{Path, PathBuf};

use proc_macro2::{Ident, TokenStream};
use quote::quote;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitStr, Meta, Token};

use crate::builtin::BuiltIn;
use crate::diagnostic::Errors;

/// What a test asks of its room in a service: `postgres(migrations = "…")`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RoomArgs {
    /// `shared`: no room, the server's main database.
    pub(crate) shared: Option<Ident>,
    /// `migrations = "dir"`, with its key.
    pub(crate) migrations: Option<(Ident, LitStr)>,
    /// `init = "file.sql"`, with its key.
    pub(crate) init: Option<(Ident, LitStr)>,
    /// `tool = "sqlx"`, with its key; the value is one of [`TOOLS`].
    pub(crate) tool: Option<(Ident, LitStr)>,
}

/// The room options one can give, as listed in messages.
pub(crate) const CHOICES: &str = "shared, migrations, tool, init";

/// The migration tools `tool = "…"` names, and the runtime's variant of each.
const TOOLS: [(&str, &str); 4] = [("sqlx", "Sqlx"), ("refinery", "Refinery"), ("diesel", "Diesel"), ("sql", "Sql")];

/// The options of one service's room: `shared, migrations = "…", tool = "…", init = "…"`.
pub(crate) fn parse(metas: Punctuated<Meta, Token![,]>, errors: &mut Errors) -> RoomArgs {
    let mut room = RoomArgs::default();
    for meta in metas {
        let key = meta.path().get_ident();
        match (&meta, key) {
            (Meta::Path(_), Some(key)) if key == "shared" => set_once(&mut room.shared, Some(key.clone()), key, errors),
            (Meta::NameValue(option), Some(key)) if key == "migrations" || key == "init" || key == "tool" => {
                let Expr::Lit(ExprLit { lit: Lit::Str(value), .. }) = &option.value else {
                    let example =
                        if key == "tool" { "tool = \"sqlx\"".to_string() } else { format!("{key} = \"…\"") };
                    let what = if key == "tool" { "a tool's name" } else { "a path" };
                    errors.spanned(&option.value, format_args!("expected {what} in a string, as in {example}"));
                    continue;
                };
                if key == "tool" && !TOOLS.iter().any(|(name, _)| *name == value.value()) {
                    let names: Vec<String> = TOOLS.iter().map(|(name, _)| format!("\"{name}\"")).collect();
                    errors.spanned(
                        value,
                        format_args!(
                            "unknown migration tool {:?}: expected one of: {}",
                            value.value(),
                            names.join(", ")
                        ),
                    );
                    continue;
                }
                let slot = match key.to_string().as_str() {
                    "migrations" => &mut room.migrations,
                    "init" => &mut room.init,
                    _ => &mut room.tool,
                };
                set_once(slot, Some((key.clone(), value.clone())), key, errors);
            }
            _ => {
                let path = meta.path();
                let name = quote!(#path).to_string().replace(' ', "");
                errors.spanned(&meta, format_args!("unknown room option `{name}`: expected one of: {CHOICES}"));
            }
        }
    }
    room
}

/// Records an error when `slot` is already set.
pub(crate) fn set_once<T>(slot: &mut Option<T>, value: Option<T>, key: &Ident, errors: &mut Errors) {
    match (value, &slot) {
        (Some(_), Some(_)) => errors.spanned(key, format_args!("`{key}` is set twice")),
        (Some(value), None) => *slot = Some(value),
        (None, _) => {}
    }
}

/// Checks that `room` fits the service `name`, and that the paths it gives
/// exist: a missing migrations directory or init file is an error at its
/// string, not a failure after Postgres started.
pub(crate) fn check(name: &Ident, room: &RoomArgs, errors: &mut Errors) {
    match BuiltIn::named(name) {
        None => errors.spanned(
            name,
            format_args!("`{name}` takes no options: only the built-in services have rooms (postgres, redis)"),
        ),
        Some(BuiltIn::Redis) => {
            for (key, _) in room.migrations.iter().chain(&room.init).chain(&room.tool) {
                errors.spanned(key, format_args!("`{key}` applies to postgres only; redis takes: shared"));
            }
        }
        Some(BuiltIn::Postgres) => {
            if let Some(shared) = room.shared.as_ref().filter(|_| room.migrations.is_some() || room.init.is_some()) {
                errors.spanned(
                    shared,
                    "`shared` uses the server's main database, which no migrations or init run into; \
                     remove `shared`, or the migrations and init",
                );
                return;
            }
            if let Some((key, _)) = room.tool.as_ref().filter(|_| room.migrations.is_none()) {
                errors.spanned(key, format_args!("`{key}` names the tool of the migrations: add migrations = \"…\""));
            }
            let Some(crate_dir) = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from) else { return };
            if let Some((_, path)) = &room.migrations {
                path_exists(&crate_dir, path, "directory", Path::is_dir, errors);
            }
            if let Some((_, path)) = &room.init {
                path_exists(&crate_dir, path, "file", Path::is_file, errors);
            }
        }
    }
}

/// An error at `path` unless it names a `what` under `crate_dir`.
fn path_exists(crate_dir: &Path, path: &LitStr, what: &str, is: fn(&Path) -> bool, errors: &mut Errors) {
    let value = path.value();
    if is(&crate_dir.join(&value)) {
        return;
    }
    let where_ = if Path::new(&value).is_absolute() {
        String::new()
    } else {
        " in the crate's directory (relative paths start from the Cargo.toml of the crate the test is in)".to_string()
    };
    errors.spanned(path, format_args!("no {what} {value:?}{where_}; create it, or fix the path"));
}

/// `room` as the runtime's `RoomOptions` of `service`. Relative paths start
/// from the manifest directory of the crate the test is in.
pub(crate) fn render(service: &Ident, room: &RoomArgs) -> TokenStream {
    let some = |value: Option<&(Ident, LitStr)>| match value {
        Some((_, path)) => quote!(::core::option::Option::Some(#path)),
        None => quote!(::core::option::Option::None),
    };
    let name = service.to_string();
    let shared = room.shared.is_some();
    let migrations = some(room.migrations.as_ref());
    let init = some(room.init.as_ref());
    let tool = match &room.tool {
        Some((_, value)) => {
            let variant = TOOLS.iter().find(|(name, _)| *name == value.value()).map_or("Sql", |(_, v)| v);
            let variant = Ident::new(variant, value.span());
            quote!(::core::option::Option::Some(::cleanroom::__private::MigrationTool::#variant))
        }
        None => quote!(::core::option::Option::None),
    };
    quote! {
        ::cleanroom::__private::RoomOptions {
            service: #name,
            shared: #shared,
            migrations: #migrations,
            init: #init,
            tool: #tool,
            base_dir: ::core::env!("CARGO_MANIFEST_DIR"),
        }
    }
}

#[cfg(test)]
mod should {
    use quote::quote;
    use syn::parse::Parser;

    use super::*;

    fn parsed(args: TokenStream) -> (RoomArgs, Vec<String>) {
        let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args).unwrap();
        let mut errors = Errors::default();
        let room = parse(metas, &mut errors);
        (room, errors.finish().err().map(|e| e.into_iter().map(|e| e.to_string()).collect()).unwrap_or_default())
    }

    fn checked(service: &str, args: TokenStream) -> Vec<String> {
        let (room, mut messages) = parsed(args);
        let mut errors = Errors::default();
        check(&Ident::new(service, proc_macro2::Span::call_site()), &room, &mut errors);
        messages.extend(errors.finish().err().into_iter().flat_map(|e| e.into_iter().map(|e| e.to_string())));
        messages
    }

    #[test]
    fn read_a_tool_by_name() {
        let (room, errors) = parsed(quote!(migrations = "src", tool = "sqlx"));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(room.tool.unwrap().1.value(), "sqlx");
    }

    #[test]
    fn reject_an_unknown_tool_listing_the_known_ones() {
        let (_, errors) = parsed(quote!(tool = "flyway"));
        assert_eq!(
            errors,
            ["unknown migration tool \"flyway\": expected one of: \"sqlx\", \"refinery\", \"diesel\", \"sql\""]
        );
    }

    #[test]
    fn accept_paths_that_exist_in_the_crate() {
        // The macros' own crate directory: `src` and `Cargo.toml` are there.
        assert!(checked("postgres", quote!(migrations = "src", tool = "diesel", init = "Cargo.toml")).is_empty());
    }

    #[test]
    fn reject_paths_that_do_not_exist_at_their_string() {
        let errors = checked("postgres", quote!(migrations = "no_such_dir", init = "src"));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("no directory \"no_such_dir\" in the crate's directory"), "{errors:?}");
        assert!(errors[1].starts_with("no file \"src\""), "a directory is not an init file: {errors:?}");
    }

    #[test]
    fn reject_a_tool_without_migrations() {
        assert_eq!(
            checked("postgres", quote!(tool = "sqlx")),
            ["`tool` names the tool of the migrations: add migrations = \"…\""]
        );
    }

    #[test]
    fn render_the_tool_as_the_runtimes_variant() {
        let (room, _) = parsed(quote!(migrations = "m", tool = "refinery"));
        let out = render(&Ident::new("postgres", proc_macro2::Span::call_site()), &room).to_string();
        assert!(out.contains(&quote!(::cleanroom::__private::MigrationTool::Refinery).to_string()), "{out}");
    }
}
