/**
 * The one topic-name rule, Kafka's: 1..249 characters of [a-zA-Z0-9._-], and not "." or ".."
 * (names a file system or a URL path would read as a directory). Clients check it before
 * sending (PMQ_ERR_ARGUMENT), the broker's strict decoder and the storage node's segment table
 * check it with this same function, so no node accepts a name another refuses. No I/O.
 */
import { LIMITS } from './limits.js';

export const TOPIC_NAME_RULE =
  `1..${LIMITS.topicNameBytesMax} characters of a-z A-Z 0-9 . _ -, and not "." or ".."`;

const TOPIC_CHARACTERS = /^[a-zA-Z0-9._-]+$/;

/** What is wrong with `topic` as a topic name, or null. Allocates nothing when it is fine. */
export function topicNameProblem(topic: unknown): string | null {
  if (typeof topic !== 'string') return 'a topic name must be a string';
  if (topic.length === 0) return 'a topic name may not be empty';
  if (topic.length > LIMITS.topicNameBytesMax) {
    return `a topic name of ${topic.length} characters is longer than ` +
      `${LIMITS.topicNameBytesMax}`;
  }
  if (!TOPIC_CHARACTERS.test(topic)) {
    return 'a topic name may hold only a-z A-Z 0-9 . _ -';
  }
  return topic === '.' || topic === '..' ? `a topic name may not be "${topic}"` : null;
}

/** The problem as one line for a user: the name, what is wrong, and the rule. */
export function topicNameMessage(topic: unknown, problem: string): string {
  const shown = typeof topic === 'string' ? JSON.stringify(topic.length > 64 ?
    `${topic.slice(0, 64)}…` : topic) : typeof topic;
  return `invalid topic name ${shown}: ${problem} (rule: ${TOPIC_NAME_RULE})`;
}
