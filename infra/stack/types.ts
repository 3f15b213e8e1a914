export type Progress = (message: string) => void;

/** One process of the local stack, as `stack up`, `down`, `status` and `logs` see it. */
export interface StackPart {
  name: 'postgres' | 'kafka' | 'registry';
  /** Ports the part listens on; all must be free before it starts. */
  ports: number[];
  address: string;
  /** Environment a user exports to reach this part. */
  env: Record<string, string>;
  needs: Array<'java' | 'maven'>;
  startTimeoutMs: number;
  /** A string in the process's command line, checked before `stack down` signals a recorded pid. */
  processMarker: string;
  /** Fetches artifacts on first use. */
  install(progress: Progress): Promise<void>;
  /** Writes config and initialises storage before each start. */
  prepare(progress: Progress): Promise<void>;
  command(): { command: string; args: string[]; env?: NodeJS.ProcessEnv; uid?: number; gid?: number };
  healthy(): Promise<boolean>;
  /** Runs once the part is healthy after a start. */
  afterStart?(): Promise<void>;
  dataDirs: string[];
}
