// Jest as the package's README tells users to run it: the jsdom environment, no transform
// of the package, nothing else. `require('@tether/client')` is its CommonJS entry.
module.exports = {
  rootDir: __dirname,
  testEnvironment: 'jsdom',
  testMatch: ['<rootDir>/*.test.cjs'],
  testTimeout: 30000,
};
