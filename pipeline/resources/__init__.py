"""Package data: the diceware wordlist, the WordNet synonym table and the MMLU dev questions
(provenance and licenses in README.md beside this file)."""
