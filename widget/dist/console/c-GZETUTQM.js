import{a,b,c}from"./c-NT5BQAJL.js";import"./c-ZQ5LASCT.js";export{a as Forgot,c as Reset,b as useLinkToken};
