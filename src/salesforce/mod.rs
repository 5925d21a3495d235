//! Salesforce client: auth, REST, streaming. Filled in by the Salesforce client work.
