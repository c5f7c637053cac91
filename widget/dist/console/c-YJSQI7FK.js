import{a,b,c}from"./c-LX2DZMF7.js";import"./c-JBNSUFDK.js";export{a as Forgot,c as Reset,b as useLinkToken};
