import { describe, expect, it } from 'vitest';
import { newClusterId } from '../../infra/stack/kafka.ts';

describe('Kafka cluster id', () => {
  it('is 22 URL-safe base64 characters and never starts with "-" (kafka-storage would read an option)', () => {
    for (let i = 0; i < 5000; i++) {
      const id = newClusterId();
      expect(id).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/);
    }
  });
});
