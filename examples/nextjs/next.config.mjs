// Nothing for Tether: the package loads its WebAssembly on first use in the browser, and
// the bundler copies the .wasm into the build by itself.
/** @type {import('next').NextConfig} */
export default {};
