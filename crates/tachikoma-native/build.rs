//! Sets the linker flags a Node-API module needs (undefined symbols resolved by node at load).

fn main() {
    napi_build::setup();
}
