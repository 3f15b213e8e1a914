import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    globalSetup: ['tests/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration tests share one Kafka broker and one Postgres on a 2-core machine: run files one at a time.
    fileParallelism: false,
    pool: 'forks',
  },
});
