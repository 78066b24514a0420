//! `crate = "…"`: where generated code finds cleanroom when the user's
//! dependency is not called `cleanroom` (renamed in Cargo.toml, or re-exported
//! by another crate), as tokio's macros take `crate = "…"`.
//!
//! Every macro takes the option, so it is read here, before the macro's own
//! parser sees the arguments, and applied after its renderer ran: the
//! renderers write `::cleanroom::__private::…`, the one door into the runtime,
//! and [`rewrite`] puts the user's path where `::cleanroom` stands before
//! `::__private`. Code a renderer adds later is covered without knowing of
//! the option.

use proc_macro2::{Group, Punct, Spacing, TokenStream, TokenTree};
use quote::ToTokens;
use syn::parse::Parser;

/// The option's key.
const KEY: &str = "crate";

/// Removes `crate = "path"` from an attribute's arguments: the other
/// arguments, as written, and the path if it was given.
pub(crate) fn take(args: TokenStream) -> syn::Result<(TokenStream, Option<syn::Path>)> {
    let mut rest: Vec<Vec<TokenTree>> = Vec::new();
    let mut found: Option<syn::Path> = None;
    for arg in split_at_commas(args) {
        if !is_crate_option(&arg) {
            rest.push(arg);
            continue;
        }
        let path = parse_value(&arg)?;
        if found.is_some() {
            return Err(syn::Error::new_spanned(&arg[0], "`crate` is set twice"));
        }
        found = Some(path);
    }
    let mut out = TokenStream::new();
    for (i, arg) in rest.into_iter().enumerate() {
        if i > 0 {
            out.extend([TokenTree::Punct(Punct::new(',', Spacing::Alone))]);
        }
        out.extend(arg);
    }
    Ok((out, found))
}

/// `tokens` with every `::cleanroom::__private` naming `path::__private`
/// instead; unchanged without a path.
pub(crate) fn rewrite(tokens: TokenStream, path: Option<&syn::Path>) -> TokenStream {
    match path {
        Some(path) => replace_root(tokens, path),
        None => tokens,
    }
}

fn replace_root(tokens: TokenStream, path: &syn::Path) -> TokenStream {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = TokenStream::new();
    let mut i = 0;
    while i < tokens.len() {
        if starts_the_door(&tokens[i..]) {
            // Keep where `cleanroom` was written, so that errors stay where
            // they were (a misspelt built-in, a type that is no service).
            let span = tokens[i + 2].span();
            out.extend(path.to_token_stream().into_iter().map(|mut token| {
                token.set_span(span);
                token
            }));
            i += 3;
            continue;
        }
        match &tokens[i] {
            TokenTree::Group(group) => {
                let mut inner = Group::new(group.delimiter(), replace_root(group.stream(), path));
                inner.set_span(group.span());
                out.extend([TokenTree::Group(inner)]);
            }
            other => out.extend([other.clone()]),
        }
        i += 1;
    }
    out
}

/// Whether `tokens` start with `:: cleanroom :: __private`.
fn starts_the_door(tokens: &[TokenTree]) -> bool {
    let colons = |a: Option<&TokenTree>, b: Option<&TokenTree>| {
        matches!((a, b), (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':')
    };
    let ident = |t: Option<&TokenTree>, name: &str| matches!(t, Some(TokenTree::Ident(i)) if i == name);
    colons(tokens.first(), tokens.get(1))
        && ident(tokens.get(2), "cleanroom")
        && colons(tokens.get(3), tokens.get(4))
        && ident(tokens.get(5), "__private")
}

fn split_at_commas(args: TokenStream) -> Vec<Vec<TokenTree>> {
    let mut out = vec![Vec::new()];
    for token in args {
        match &token {
            TokenTree::Punct(p) if p.as_char() == ',' => out.push(Vec::new()),
            _ => out.last_mut().expect("never empty").push(token),
        }
    }
    out.retain(|arg| !arg.is_empty());
    out
}

fn is_crate_option(arg: &[TokenTree]) -> bool {
    matches!(arg.first(), Some(TokenTree::Ident(ident)) if ident == KEY)
}

/// The path in `crate = "path"`.
fn parse_value(arg: &[TokenTree]) -> syn::Result<syn::Path> {
    let key = &arg[0];
    let usage = "expected the path of the cleanroom crate in a string, as in crate = \"my_cleanroom\"";
    let literal = match arg {
        [_, TokenTree::Punct(eq), value @ ..] if eq.as_char() == '=' && !value.is_empty() => {
            let value: TokenStream = value.iter().cloned().collect();
            syn::parse2::<syn::LitStr>(value.clone()).map_err(|_| syn::Error::new_spanned(value, usage))?
        }
        _ => return Err(syn::Error::new_spanned(key, usage)),
    };
    let path = syn::Path::parse_mod_style
        .parse_str(&literal.value())
        .map_err(|_| syn::Error::new_spanned(&literal, format_args!("`{}` is not a path: {usage}", literal.value())))?;
    // The path's tokens carry the string's span: a path that leads nowhere
    // is reported at the string.
    Ok(respan(path, &literal))
}

fn respan(path: syn::Path, literal: &syn::LitStr) -> syn::Path {
    let tokens: TokenStream = path
        .to_token_stream()
        .into_iter()
        .map(|mut token| {
            token.set_span(literal.span());
            token
        })
        .collect();
    syn::parse2(tokens).expect("a path stays a path")
}

#[cfg(test)]
mod tests {
    mod should {
        use quote::quote;

        use super::super::*;

        fn path(text: &str) -> syn::Path {
            syn::parse_str(text).unwrap()
        }

        #[test]
        fn take_the_crate_option_and_leave_the_others_as_written() {
            let (rest, found) =
                take(quote!(postgres(migrations = "m"), crate = "cr", flavor = "multi_thread")).unwrap();
            assert_eq!(rest.to_string(), quote!(postgres(migrations = "m"), flavor = "multi_thread").to_string());
            assert_eq!(found.unwrap(), path("cr"));
        }

        #[test]
        fn leave_arguments_without_the_option_alone() {
            let (rest, found) = take(quote!(redis, web)).unwrap();
            assert_eq!(rest.to_string(), quote!(redis, web).to_string());
            assert!(found.is_none());
            let (rest, found) = take(quote!()).unwrap();
            assert!(rest.is_empty() && found.is_none());
        }

        #[test]
        fn accept_a_path_through_another_crate() {
            let (_, found) = take(quote!(crate = "::testkit::cleanroom")).unwrap();
            assert_eq!(found.unwrap(), path("::testkit::cleanroom"));
        }

        #[test]
        fn reject_a_value_that_is_no_path_in_a_string() {
            for args in [quote!(crate = cr), quote!(crate), quote!(crate = "not a path"), quote!(crate = "a<T>")] {
                let error = take(args.clone()).unwrap_err().to_string();
                assert!(error.contains("as in crate = \"my_cleanroom\""), "{args}: {error}");
            }
            let error = take(quote!(crate = "a", crate = "b")).unwrap_err().to_string();
            assert_eq!(error, "`crate` is set twice");
        }

        #[test]
        fn name_the_users_path_wherever_generated_code_opens_the_door() {
            let generated = quote!(
                static D: ::cleanroom::__private::TestDesc = f(&<::cleanroom::__private::postgres as X>::NODE);,
                ::cleanroom::__private::inventory::submit! { ::cleanroom::__private::Registration::Test(&D) }
            );
            let out = rewrite(generated, Some(&path("cr"))).to_string();
            let expected = quote!(
                static D: cr::__private::TestDesc = f(&<cr::__private::postgres as X>::NODE);,
                cr::__private::inventory::submit! { cr::__private::Registration::Test(&D) }
            );
            assert_eq!(out, expected.to_string());
        }

        #[test]
        fn leave_other_paths_and_code_without_the_option_alone() {
            let generated = quote!(::cleanroom::Postgres; ::core::module_path!(); cleanroom::__private::x);
            assert_eq!(rewrite(generated.clone(), Some(&path("cr"))).to_string(), generated.to_string());
            let door = quote!(::cleanroom::__private::run);
            assert_eq!(rewrite(door.clone(), None).to_string(), door.to_string());
        }
    }
}
