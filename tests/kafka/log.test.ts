import { logLevel } from 'kafkajs';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { pinoLogCreator } from '../../libs/kafka/index.ts';

/** The pino level each kafkajs log entry ends up at. */
function levelsOf(entries: Array<{ level: logLevel; message: string; error?: string }>): string[] {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(line) });
  const log = pinoLogCreator(logger)(logLevel.DEBUG);
  for (const { level, message, error } of entries) {
    log({ namespace: 'Connection', level, label: 'ERROR', log: { timestamp: '', message, error } });
  }
  return lines.map((line) => pino.levels.labels[(JSON.parse(line) as { level: number }).level]!);
}

describe('kafkajs logs through pino', () => {
  it('keeps real errors at error, and what kafkajs retries itself (a rebalance, a loading coordinator) at debug', () => {
    expect(
      levelsOf([
        { level: logLevel.ERROR, message: 'Connection error', error: 'connect ECONNREFUSED 127.0.0.1:9092' },
        {
          level: logLevel.ERROR,
          message: '[Connection] Response SyncGroup(key: 14, version: 3)',
          error: 'The group is rebalancing, so a rejoin is needed',
        },
        {
          level: logLevel.ERROR,
          message: '[Connection] Response GroupCoordinator(key: 10, version: 2)',
          error: "The coordinator is loading and hence can't process requests for this group",
        },
        { level: logLevel.WARN, message: 'Consumer group is slow' },
      ]),
    ).toEqual(['error', 'debug', 'debug', 'warn']);
  });
});
