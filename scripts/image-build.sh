# The images' static build, sourced by scripts/images.sh (which builds the images
# with it) and by `scripts/pgo.sh image` (which trains the profile for it). A
# profile fits only the build it was trained on: every Rust symbol's name carries
# cargo's metadata hash, which covers the cargo profile, the target and the
# features the packages built together unify, so both scripts build exactly this.
#
# Static binaries: glibc with crt-static. Only the target's code gets the flag
# (`--target`), so build scripts and proc macros stay ordinary host binaries.
image_triple=x86_64-unknown-linux-gnu
image_rustflags="-C target-feature=+crt-static"
image_cargo_args=(--profile image --target "$image_triple" -p meshtrace-proxy -p meshtrace-control --bins)
# Where `scripts/pgo.sh image` writes the profile and scripts/images.sh looks for it.
image_profile=target/pgo/meshtrace-proxy-image.profdata
